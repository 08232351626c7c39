"""Vision Transformer with torchvision's module names (``conv_proj``, ``class_token``,
``encoder.layers.encoder_layer_N`` with ``ln_1``, ``self_attention``, ``ln_2``, ``mlp``,
``encoder.ln``, ``heads.head``), so torchvision ViT state dicts load unchanged. The
residual units are found by the generic rule like anyone else's; nothing here is
declared for practise.

``vit_tiny_fmnist``: 28 px, 4 px patches (49 tokens + class token), width 64, 6 layers,
4 heads, MLP 128: the Fashion-MNIST transformer teacher.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from .registry import register_model
from ..errors import UsageError


class MLPBlock(nn.Sequential):
    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width),
                         nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attention(ln_1(x)), then + mlp(ln_2(.))."""

    def __init__(self, heads: int, width: int, hidden: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(width, heads, dropout=0.0, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MLPBlock(width, hidden, dropout)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, tokens: int, layers: int, heads: int, width: int, hidden: int, dropout: float):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, width).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, width, hidden, dropout)) for i in range(layers)))
        self.ln = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int = 28, patch_size: int = 4, layers: int = 6, heads: int = 4, width: int = 64,
                 hidden: int = 128, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.0):
        super().__init__()
        if image_size % patch_size:
            raise UsageError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.patch_size, self.width = patch_size, width
        self.conv_proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = Encoder((image_size // patch_size) ** 2 + 1, layers, heads, width, hidden, dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(width, num_classes)))
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (batch, patches, width)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


@register_model("vit_tiny_fmnist")
def vit_tiny_fmnist(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> VisionTransformer:
    return VisionTransformer(image_size=image_size, patch_size=4, layers=6, heads=4, width=64, hidden=128,
                             num_classes=num_classes, in_channels=in_channels)
