"""CIFAR-style ResNet-20/32/56 (He et al. 2016, sec. 4.2): 3 stages of n basic blocks,
widths 16/32/64, for small images such as 28x28 Fashion-MNIST.

Shortcuts that change shape use a 1x1 conv + BatchNorm (option B), the same structure
as torchvision's ResNet, so surgery and adaptor placement treat both families alike.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .resnet import BasicBlock, init_resnet_weights_, make_stage
from ..errors import UsageError


class CifarResNet(nn.Module):
    practise_feature_layer = "layer3"
    practise_image_size = 32

    def __init__(self, depth: int, *, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise UsageError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, planes = make_stage(BasicBlock, 16, 16, n, 1)
        self.layer2, planes = make_stage(BasicBlock, planes, 32, n, 2)
        self.layer3, planes = make_stage(BasicBlock, planes, 64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes, num_classes)
        init_resnet_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet20")
def resnet20(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(20, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet32")
def resnet32(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(32, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet56")
def resnet56(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(56, num_classes=num_classes, in_channels=in_channels)
