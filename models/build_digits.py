"""Build models/digits_cnn.onnx: a small CNN trained on scikit-learn's digits (1797 labelled
8x8 images, shipped inside scikit-learn: nothing is downloaded), and models/digits_test.npz,
the held-out test split as DATA (key ``input``: N x 1 x 8 x 8 float32, key ``labels``), and
models/digits_train.npz, the training split in the same form (fine-tuning data for
``optc distill``).

Seeded and single-threaded, so a run is deterministic; trains in a few seconds on one CPU core
and prints the test accuracy (recorded in models/README.md).

    python models/build_digits.py
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from _export import export, out_dir, seed_everything

EPOCHS = 30


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
                                        nn.Dropout(0.25), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def load_split():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5) / 0.5  # [0, 16] -> [-1, 1]
    x = x[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def main() -> None:
    out = out_dir()
    seed_everything(0)
    x_train, x_test, y_train, y_test = load_split()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    acc = float((pred == y_test).mean())
    path = export(model, torch.from_numpy(x_test[:1]), out / "digits_cnn.onnx")
    np.savez(out / "digits_test.npz", input=x_test, labels=y_test)
    np.savez(out / "digits_train.npz", input=x_train, labels=y_train)
    print(f"wrote {path}, {out / 'digits_test.npz'} and {out / 'digits_train.npz'}; test "
          f"accuracy {acc:.4f} on {len(y_test)} images")


if __name__ == "__main__":
    main()
