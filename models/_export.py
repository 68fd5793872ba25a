"""Shared export helper for the model-building scripts (plain torch, no torchvision)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

OPSET = 17
HERE = Path(__file__).resolve().parent


def seed_everything(seed: int = 0) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def out_dir() -> Path:
    """``--out-dir DIR`` from the command line, else this folder."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    return args.out_dir


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, *,
           input_name: str = "input", output_name: str = "logits") -> Path:
    """Export in eval mode with BatchNormalization kept as its own node (constant folding off),
    a symbolic batch dimension ``N``, opset 17."""
    model.eval()
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, do_constant_folding=False,
        opset_version=OPSET, input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}})
    return path
