"""Vision models of the zoo, layer for layer as torchvision builds them (1000 classes, 224x224).

Only the architecture is reproduced (random init, no weights); module names may differ from
torchvision's, parameter shapes and the computation do not.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 1000
IMAGE_SIZE = 224


# --- ResNet (He et al. 2016; torchvision's v1.5: stride on the 3x3 conv of a bottleneck) ----
def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch)]


class _ResidualBlock(nn.Module):
    """Basic block (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with 4x expansion).

    A bottleneck's inner width is planes * width_per_group / 64 * groups, its 3x3 conv grouped
    (ResNeXt, Xie et al. 2017; Wide ResNet: width_per_group 128), as torchvision builds them.
    """

    def __init__(self, in_ch: int, width: int, stride: int, bottleneck: bool, groups: int = 1,
                 width_per_group: int = 64):
        super().__init__()
        out_ch = width * (4 if bottleneck else 1)
        if bottleneck:
            inner = width * width_per_group // 64 * groups
            layers = [
                *_conv_bn(in_ch, inner, 1), nn.ReLU(inplace=True),
                *_conv_bn(inner, inner, 3, stride, groups), nn.ReLU(inplace=True),
                *_conv_bn(inner, out_ch, 1),
            ]
        else:
            layers = [*_conv_bn(in_ch, width, 3, stride), nn.ReLU(inplace=True), *_conv_bn(width, out_ch, 3)]
        self.body = nn.Sequential(*layers)
        self.downsample = (
            nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride)) if stride != 1 or in_ch != out_ch else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.downsample(x))


class ResNet(nn.Module):
    def __init__(self, depths: tuple[int, int, int, int], bottleneck: bool, groups: int = 1,
                 width_per_group: int = 64):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, in_ch = [], 64
        for i, depth in enumerate(depths):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(_ResidualBlock(in_ch, width, 2 if i > 0 and j == 0 else 1, bottleneck, groups,
                                             width_per_group))
                in_ch = width * (4 if bottleneck else 1)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_ch, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(images))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18() -> nn.Module:
    return ResNet((2, 2, 2, 2), bottleneck=False)


def resnet50() -> nn.Module:
    return ResNet((3, 4, 6, 3), bottleneck=True)


# --- MobileNets: V2 (Sandler et al. 2018) and V3-Large (Howard et al. 2019, table 1), torchvision's layouts --
def _divisible_by_8(channels: float) -> int:
    """Round to the nearest multiple of 8, never below 90% of the input (MobileNet rule)."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


# torchvision's MobileNetV3 batch norm; its MobileNetV2 keeps PyTorch's defaults (eps 1e-5, momentum 0.1).
_V3_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def _conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int, act: type[nn.Module] | None,
                 norm: Callable[[int], nn.Module] = _V3_NORM):
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        norm(out_ch),
    ]
    return layers + ([act(inplace=True)] if act else [])


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        squeezed = _divisible_by_8(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(scale)


class _InvertedResidual(nn.Module):
    def __init__(
        self, in_ch: int, kernel: int, expanded: int, out_ch: int, se: bool, act: type[nn.Module], stride: int,
        norm: Callable[[int], nn.Module] = _V3_NORM,
    ):
        super().__init__()
        layers = _conv_bn_act(in_ch, expanded, 1, 1, 1, act, norm) if expanded != in_ch else []
        layers += _conv_bn_act(expanded, expanded, kernel, stride, expanded, act, norm)
        layers += [_SqueezeExcite(expanded)] if se else []
        layers += _conv_bn_act(expanded, out_ch, 1, 1, 1, None, norm)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


_RE, _HS = nn.ReLU, nn.Hardswish
# (input channels, kernel, expanded channels, output channels, squeeze-excite, activation, stride)
_MOBILENET_V3_LARGE = (
    (16, 3, 16, 16, False, _RE, 1), (16, 3, 64, 24, False, _RE, 2), (24, 3, 72, 24, False, _RE, 1),
    (24, 5, 72, 40, True, _RE, 2), (40, 5, 120, 40, True, _RE, 1), (40, 5, 120, 40, True, _RE, 1),
    (40, 3, 240, 80, False, _HS, 2), (80, 3, 200, 80, False, _HS, 1), (80, 3, 184, 80, False, _HS, 1),
    (80, 3, 184, 80, False, _HS, 1), (80, 3, 480, 112, True, _HS, 1), (112, 3, 672, 112, True, _HS, 1),
    (112, 5, 672, 160, True, _HS, 2), (160, 5, 960, 160, True, _HS, 1), (160, 5, 960, 160, True, _HS, 1),
)


class MobileNetV3(nn.Module):
    """MobileNetV3 from its block table (Large by default) and the width of its last hidden layer."""

    def __init__(self, table: tuple = _MOBILENET_V3_LARGE, last_channel: int = 1280):
        super().__init__()
        last_conv = 6 * table[-1][3]
        self.features = nn.Sequential(
            *_conv_bn_act(3, 16, 3, 2, 1, _HS),
            *(_InvertedResidual(*row) for row in table),
            *_conv_bn_act(table[-1][3], last_conv, 1, 1, 1, _HS),
        )
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel), nn.Hardswish(inplace=True), nn.Dropout(0.2),
            nn.Linear(last_channel, NUM_CLASSES)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(images), 1), 1))


def mobilenet_v3_large() -> nn.Module:
    return MobileNetV3()


# (expansion t, output channels c, repeats n, first stride s): Sandler et al. 2018, table 2.
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        blocks, in_ch = [], 32
        for t, c, n, s in _MOBILENET_V2:
            for i in range(n):
                blocks.append(_InvertedResidual(in_ch, 3, in_ch * t, c, False, nn.ReLU6, s if i == 0 else 1,
                                                nn.BatchNorm2d))
                in_ch = c
        self.features = nn.Sequential(
            *_conv_bn_act(3, 32, 3, 2, 1, nn.ReLU6, nn.BatchNorm2d), *blocks,
            *_conv_bn_act(in_ch, 1280, 1, 1, 1, nn.ReLU6, nn.BatchNorm2d),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, NUM_CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(images), 1), 1))


def mobilenet_v2() -> nn.Module:
    return MobileNetV2()


# --- ViT-B/16 (Dosovitskiy et al. 2021; torchvision: pre-norm, LayerNorm eps 1e-6, no dropout) --
class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + self.out_proj(attn)
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    def __init__(self, patch: int = 16, dim: int = 768, layers: int = 12, heads: int = 12, mlp_dim: int = 3072):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, (IMAGE_SIZE // patch) ** 2 + 1, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*(_ViTBlock(dim, heads, mlp_dim) for _ in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


def vit_b_16() -> nn.Module:
    return VisionTransformer()


# --- EfficientNet-B0 (Tan and Le 2019; torchvision: MBConv with squeeze-excite, SiLU) --------------
# (expansion, kernel, stride, input channels, output channels, layers): Tan and Le 2019, table 1.
_EFFICIENTNET_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class _MBConv(nn.Module):
    """Expand (1x1), depthwise, squeeze-excite to a quarter of the block's input channels, project (1x1)."""

    def __init__(self, expansion: int, kernel: int, stride: int, in_ch: int, out_ch: int):
        super().__init__()
        expanded = in_ch * expansion
        layers = _conv_bn_act(in_ch, expanded, 1, 1, 1, nn.SiLU, nn.BatchNorm2d) if expansion != 1 else []
        layers += _conv_bn_act(expanded, expanded, kernel, stride, expanded, nn.SiLU, nn.BatchNorm2d)
        self.expand_dw = nn.Sequential(*layers)
        squeezed = max(1, in_ch // 4)
        self.se_reduce, self.se_expand = nn.Conv2d(expanded, squeezed, 1), nn.Conv2d(squeezed, expanded, 1)
        self.project = nn.Sequential(*_conv_bn_act(expanded, out_ch, 1, 1, 1, None, nn.BatchNorm2d))
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand_dw(x)
        y = y * torch.sigmoid(self.se_expand(F.silu(self.se_reduce(F.adaptive_avg_pool2d(y, 1)))))
        y = self.project(y)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    """EfficientNet-B0 scaled by width and depth (B1-B7, Tan and Le 2019, eq. 3), torchvision's rounding:
    channels * width to a multiple of 8, layers * depth rounded up; the head is 4x the last stage's width."""

    def __init__(self, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        table = [(e, k, s, _divisible_by_8(cin * width), _divisible_by_8(cout * width), math.ceil(n * depth))
                 for e, k, s, cin, cout, n in _EFFICIENTNET_B0]
        blocks = [_MBConv(e, k, s if i == 0 else 1, cin if i == 0 else cout, cout)
                  for e, k, s, cin, cout, n in table for i in range(n)]
        stem, last_in = table[0][3], table[-1][4]
        self.features = nn.Sequential(*_conv_bn_act(3, stem, 3, 2, 1, nn.SiLU, nn.BatchNorm2d), *blocks,
                                      *_conv_bn_act(last_in, 4 * last_in, 1, 1, 1, nn.SiLU, nn.BatchNorm2d))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * last_in, NUM_CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(images), 1), 1))


def efficientnet_b0() -> nn.Module:
    return EfficientNet()


# --- ConvNeXt-T (Liu et al. 2022; torchvision: 7x7 depthwise, LayerNorm, 4x MLP, layer scale) -------
class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class ConvNeXt(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (96, 192, 384, 768), depths: tuple[int, ...] = (3, 3, 9, 3)):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), _LayerNorm2d(dims[0], eps=1e-6)]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i:
                layers += [_LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [_ConvNeXtBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.head_norm = _LayerNorm2d(dims[-1], eps=1e-6)
        self.classifier = nn.Linear(dims[-1], NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.features(images), 1)
        return self.classifier(torch.flatten(self.head_norm(pooled), 1))


def convnext_tiny() -> nn.Module:
    return ConvNeXt()


# --- DDPM U-Net (Ho et al. 2020, CIFAR-10 model: 32x32, ch 128, multipliers 1,2,2,2, 2 res blocks,
# self-attention at 16x16; layout of the authors' diffusion code as ported to PyTorch) -----------------
DDPM_IMAGE_SIZE = 32


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps (Vaswani et al. 2017, as in DDPM): [batch, dim]."""
    half = dim // 2
    freqs = torch.exp(-torch.arange(half, dtype=torch.float32, device=t.device) * (9.210340371976184 / (half - 1)))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _DDPMResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb: int, dropout: float = 0.1):
        super().__init__()
        self.norm1, self.conv1 = _group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb, out_ch)
        self.norm2, self.conv2 = _group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = dropout
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.dropout(F.silu(self.norm2(h)), self.dropout, self.training))
        return self.shortcut(x) + h


class _DDPMAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _group_norm(channels)
        self.q, self.k, self.v, self.proj = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, 1, c, hh * ww).transpose(2, 3) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, hh, ww)
        return x + self.proj(out)


class DDPMUNet(nn.Module):
    """Predicts the noise in a noised image at a timestep: (images [b, 3, 32, 32], timesteps [b]) -> noise."""

    def __init__(self, ch: int = 128, mults: tuple[int, ...] = (1, 2, 2, 2), blocks: int = 2,
                 attention_at: tuple[int, ...] = (16,)):
        super().__init__()
        self.ch, temb = ch, 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down, skips, res, c = nn.ModuleList(), [ch], DDPM_IMAGE_SIZE, ch
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(_DDPMResBlock(c, ch * mult, temb))
                c = ch * mult
                if res in attention_at:
                    self.down.append(_DDPMAttention(c))
                skips.append(c)
            if level != len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([_DDPMResBlock(c, c, temb), _DDPMAttention(c), _DDPMResBlock(c, c, temb)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(_DDPMResBlock(c + skips.pop(), ch * mult, temb))
                c = ch * mult
                if res in attention_at:
                    self.up.append(_DDPMAttention(c))
            if level:
                self.up.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
                res *= 2
        self.norm_out, self.conv_out = _group_norm(c), nn.Conv2d(c, 3, 3, padding=1)

    def _run(self, layers: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor, skips: list | None,
             push: bool) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, _DDPMResBlock):
                h = layer(torch.cat([h, skips.pop()], 1) if skips is not None and not push else h, temb)
            else:
                h = layer(h)
            if push and not isinstance(layer, _DDPMAttention):
                skips.append(h)
            elif push:
                skips[-1] = h
        return h

    def forward(self, images: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        # The embedding is computed in fp32 and cast to the images' dtype, as diffusers does (bf16 inference).
        temb = self.temb(timestep_embedding(timesteps, self.ch).to(images.dtype))
        h = self.conv_in(images)
        skips = [h]
        h = self._run(self.down, h, temb, skips, push=True)
        h = self._run(self.mid, h, temb, None, push=False)
        h = self._run(self.up, h, temb, skips, push=False)
        return self.conv_out(F.silu(self.norm_out(h)))


def ddpm_unet() -> nn.Module:
    return DDPMUNet()
