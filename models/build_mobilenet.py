"""Build models/mobilenetv2_mini.onnx: a MobileNetV2-style CNN (inverted residual blocks:
1x1 expand, 3x3 depthwise, 1x1 project; BN unfused; ReLU6 exported as Clip; residual Add),
3x64x64 input, 10 classes, random (seeded) weights with non-trivial BN statistics.

    python models/build_mobilenet.py
"""

from __future__ import annotations

import torch
from torch import nn

from _export import export, out_dir, seed_everything
from build_resnet import randomize_bn


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   conv_bn(hidden, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2Mini(nn.Module):
    # (expand, channels, repeats, stride), as in MobileNetV2 but narrower and shorter
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 1, 1))

    def __init__(self, classes: int = 10):
        super().__init__()
        layers = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 320, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(320, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def main() -> None:
    out = out_dir()
    seed_everything(0)
    model = MobileNetV2Mini()
    randomize_bn(model)
    path = export(model, torch.randn(1, 3, 64, 64), out / "mobilenetv2_mini.onnx")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
