"""Distillation losses.

* Soft targets (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015):
  p^T = softmax(z / T). With teacher soft targets p_t^T (the mean over teachers when there are
  several) the student's loss is

      L = alpha * T^2 * KL(p_t^T || p_s^T)  +  (1 - alpha) * CE(z_s, labels)

  (KL averaged over the batch, "batchmean"; the T^2 keeps the soft term's gradients on the
  scale of the hard term's as T changes). alpha = 1 needs no labels.
* Hints (Romero et al., "FitNets: Hints for Thin Deep Nets", 2015): the mean squared error
  between a teacher tensor and a student tensor, the student's first mapped by a learned
  regressor when the shapes differ (a 1x1 convolution for NCHW feature maps, a linear layer
  for (N, features)), as Torch-Pruning and torchdistill do after pruning removed channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optc.errors import OptcError


def soft_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The mean over teachers of softmax(z / T)."""
    probs = [torch.softmax(z / temperature, dim=1) for z in teacher_logits]
    return torch.stack(probs).mean(0)


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, labels, *,
            temperature: float, alpha: float) -> torch.Tensor:
    loss = student_logits.new_zeros(())
    if alpha > 0:
        log_p = torch.log_softmax(student_logits / temperature, dim=1)
        loss = loss + alpha * temperature ** 2 * F.kl_div(log_p, teacher_probs,
                                                          reduction="batchmean")
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


class Regressor(nn.Module):
    """Maps a student tensor onto the teacher tensor's shape for a hint loss."""

    def __init__(self, student_shape: tuple, teacher_shape: tuple, label: str):
        super().__init__()
        s, t = tuple(student_shape), tuple(teacher_shape)
        self.map: nn.Module
        if s == t:
            self.map = nn.Identity()
        elif len(s) == 4 and len(t) == 4 and s[2:] == t[2:]:
            self.map = nn.Conv2d(s[1], t[1], 1, bias=False)
        elif len(s) == 2 and len(t) == 2:
            self.map = nn.Linear(s[1], t[1], bias=False)
        else:
            raise OptcError(f"hint {label}: student shape {list(s)} cannot be mapped onto the "
                            f"teacher shape {list(t)} (channels may differ, not the spatial "
                            f"size or the rank)")
        if not isinstance(self.map, nn.Identity):
            # seeded by the caller's torch.manual_seed: deterministic
            nn.init.kaiming_uniform_(self.map.weight, a=5 ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)


def hint_loss(regressor: Regressor, student: torch.Tensor, teacher: torch.Tensor
              ) -> torch.Tensor:
    return F.mse_loss(regressor(student), teacher)
