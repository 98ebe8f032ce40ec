"""More vision models of the zoo, layer for layer as torchvision builds them (1000 classes, 224x224).

Sizes of the families zoo_vision already builds (ResNet, EfficientNet, ConvNeXt, ViT, MobileNetV3)
and the classic networks it does not (VGG, AlexNet, SqueezeNet, EfficientNetV2). Only the architecture
is reproduced, as in zoo_vision: random init, no weights, parameter shapes and computation as torchvision's.
`BUILDERS` maps each torchvision name to its factory and a one-line description.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import math

import torch
import torch.nn.functional as F
from torch import nn

from .zoo_vision import (NUM_CLASSES, _HS, _RE, ConvNeXt, EfficientNet, MobileNetV3, ResNet, VisionTransformer,
                         _conv_bn_act, _divisible_by_8, _InvertedResidual, _MBConv)

_BN = nn.BatchNorm2d


def _head(features: int, dropout: float = 0.2) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(features, NUM_CLASSES))


# --- VGG (Simonyan and Zisserman 2015, table 1, configurations A, B, D, E; "M" is a 2x2 max-pool) -------
_VGG = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _classifier_4096(in_features: int, final_dropout: bool) -> nn.Sequential:
    """VGG's and AlexNet's two 4096-wide hidden layers and the class layer."""
    hidden = [nn.Linear(in_features, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
              nn.Linear(4096, 4096), nn.ReLU(inplace=True)]
    if final_dropout:
        return nn.Sequential(*hidden, nn.Dropout(0.5), nn.Linear(4096, NUM_CLASSES))
    return nn.Sequential(nn.Dropout(0.5), *hidden, nn.Linear(4096, NUM_CLASSES))


class _PoolTo(nn.Module):
    """features -> adaptive average pool to size x size -> flatten -> classifier (size 1: global pooling)."""

    def __init__(self, features: nn.Module, size: int, classifier: nn.Module):
        super().__init__()
        self.features, self.size, self.classifier = features, size, classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(images), self.size), 1))


def vgg(depth: int, batch_norm: bool) -> nn.Module:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _VGG[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(in_ch, item, 3, padding=1), *([_BN(item)] if batch_norm else []), nn.ReLU(inplace=True)]
        in_ch = item
    return _PoolTo(nn.Sequential(*layers), 7, _classifier_4096(512 * 7 * 7, final_dropout=True))


# --- AlexNet (Krizhevsky et al. 2012; torchvision's one-GPU variant, "one weird trick" widths 64-192-384-256-256) --
def alexnet() -> nn.Module:
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )
    return _PoolTo(features, 6, _classifier_4096(256 * 6 * 6, final_dropout=False))


# --- SqueezeNet 1.0 and 1.1 (Iandola et al. 2016): Fire modules, a 1x1 conv as classifier ----------------
class _Fire(nn.Module):
    def __init__(self, in_ch: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_ch, squeeze, 1)
        self.expand1x1, self.expand3x3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


# (stem channels, stem kernel, then per stage the Fire modules as (squeeze, expand) before a max-pool)
_SQUEEZENET = {
    "1_0": (96, 7, (((16, 64), (16, 64), (32, 128)), ((32, 128), (48, 192), (48, 192), (64, 256)), ((64, 256),))),
    "1_1": (64, 3, (((16, 64), (16, 64)), ((32, 128), (32, 128)), ((48, 192), (48, 192), (64, 256), (64, 256)))),
}


def squeezenet(version: str) -> nn.Module:
    stem, kernel, stages = _SQUEEZENET[version]
    layers: list[nn.Module] = [nn.Conv2d(3, stem, kernel, 2), nn.ReLU(inplace=True)]
    in_ch = stem
    for stage in stages:
        layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        for squeeze, expand in stage:
            layers.append(_Fire(in_ch, squeeze, expand))
            in_ch = 2 * expand
    classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(in_ch, NUM_CLASSES, 1), nn.ReLU(inplace=True))
    return nn.Sequential(*layers, classifier, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


# --- EfficientNetV2 (Tan and Le 2021, table 4 and torchvision's M and L tables) ---------------------------
class _FusedMBConv(nn.Module):
    """A k x k conv expanding (or, at expansion 1, mapping) the channels, then a 1x1 projection; no squeeze-excite."""

    def __init__(self, expansion: int, kernel: int, stride: int, in_ch: int, out_ch: int):
        super().__init__()
        if expansion == 1:
            layers = _conv_bn_act(in_ch, out_ch, kernel, stride, 1, nn.SiLU, _BN)
        else:
            layers = (_conv_bn_act(in_ch, in_ch * expansion, kernel, stride, 1, nn.SiLU, _BN)
                      + _conv_bn_act(in_ch * expansion, out_ch, 1, 1, 1, None, _BN))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# (fused, expansion, kernel, stride, input channels, output channels, layers)
_EFFICIENTNET_V2 = {
    "s": ((1, 1, 3, 1, 24, 24, 2), (1, 4, 3, 2, 24, 48, 4), (1, 4, 3, 2, 48, 64, 4), (0, 4, 3, 2, 64, 128, 6),
          (0, 6, 3, 1, 128, 160, 9), (0, 6, 3, 2, 160, 256, 15)),
    "m": ((1, 1, 3, 1, 24, 24, 3), (1, 4, 3, 2, 24, 48, 5), (1, 4, 3, 2, 48, 80, 5), (0, 4, 3, 2, 80, 160, 7),
          (0, 6, 3, 1, 160, 176, 14), (0, 6, 3, 2, 176, 304, 18), (0, 6, 3, 1, 304, 512, 5)),
    "l": ((1, 1, 3, 1, 32, 32, 4), (1, 4, 3, 2, 32, 64, 7), (1, 4, 3, 2, 64, 96, 7), (0, 4, 3, 2, 96, 192, 10),
          (0, 6, 3, 1, 192, 224, 19), (0, 6, 3, 2, 224, 384, 25), (0, 6, 3, 1, 384, 640, 7)),
}


def efficientnet_v2(size: str) -> nn.Module:
    table = _EFFICIENTNET_V2[size]
    blocks = [(_FusedMBConv if fused else _MBConv)(e, k, s if i == 0 else 1, cin if i == 0 else cout, cout)
              for fused, e, k, s, cin, cout, n in table for i in range(n)]
    features = nn.Sequential(*_conv_bn_act(3, table[0][4], 3, 2, 1, nn.SiLU, _BN), *blocks,
                             *_conv_bn_act(table[-1][5], 1280, 1, 1, 1, nn.SiLU, _BN))
    return _PoolTo(features, 1, _head(1280))


# --- MobileNetV3-Small (Howard et al. 2019, table 2), same row layout as zoo_vision's Large table ------------
_MOBILENET_V3_SMALL = (
    (16, 3, 16, 16, True, _RE, 2), (16, 3, 72, 24, False, _RE, 2), (24, 3, 88, 24, False, _RE, 1),
    (24, 5, 96, 40, True, _HS, 2), (40, 5, 240, 40, True, _HS, 1), (40, 5, 240, 40, True, _HS, 1),
    (40, 5, 120, 48, True, _HS, 1), (48, 5, 144, 48, True, _HS, 1), (48, 5, 288, 96, True, _HS, 2),
    (96, 5, 576, 96, True, _HS, 1), (96, 5, 576, 96, True, _HS, 1),
)


# --- DenseNet-BC (Huang et al. 2017, table 1): every layer sees the concatenation of all before it ----------
class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv to k (the growth rate); takes the list of earlier
    feature maps and concatenates them first, as torchvision does."""

    def __init__(self, in_ch: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(_BN(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, 4 * growth, 1, bias=False),
                                  _BN(4 * growth), nn.ReLU(inplace=True),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.body(torch.cat(features, 1))


class _DenseBlock(nn.ModuleList):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


def densenet(growth: int, blocks: tuple[int, ...], stem: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, stem, 7, 2, 3, bias=False), _BN(stem), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, 2, 1)]
    channels = stem
    for i, depth in enumerate(blocks):
        layers.append(_DenseBlock(_DenseLayer(channels + j * growth, growth) for j in range(depth)))
        channels += depth * growth
        if i != len(blocks) - 1:  # transition: BN-ReLU-1x1 conv halving the channels, 2x2 average pool
            layers += [_BN(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels // 2, 1, bias=False),
                       nn.AvgPool2d(2, 2)]
            channels //= 2
    layers += [_BN(channels), nn.ReLU(inplace=True)]
    return _PoolTo(nn.Sequential(*layers), 1, nn.Linear(channels, NUM_CLASSES))


_DENSENET = {121: (32, (6, 12, 24, 16), 64), 161: (48, (6, 12, 36, 24), 96), 169: (32, (6, 12, 32, 32), 64),
             201: (32, (6, 12, 48, 32), 64)}


# --- ShuffleNetV2 (Ma et al. 2018, table 5): channel split, two branches, channel shuffle -----------------
class _ShuffleUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        half = out_ch // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False), _BN(in_ch),
                                         *_conv_bn_act(in_ch, half, 1, 1, 1, nn.ReLU, _BN))
        self.branch2 = nn.Sequential(
            *_conv_bn_act(in_ch if stride > 1 else half, half, 1, 1, 1, nn.ReLU, _BN),
            *_conv_bn_act(half, half, 3, stride, half, None, _BN),
            *_conv_bn_act(half, half, 1, 1, 1, nn.ReLU, _BN),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        b, c, h, w = out.shape
        return out.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # shuffle two groups


_SHUFFLENET = {"x0_5": (48, 96, 192, 1024), "x1_0": (116, 232, 464, 1024), "x1_5": (176, 352, 704, 1024),
               "x2_0": (244, 488, 976, 2048)}


def shufflenet_v2(width: str) -> nn.Module:
    *stages, last = _SHUFFLENET[width]
    layers: list[nn.Module] = [*_conv_bn_act(3, 24, 3, 2, 1, nn.ReLU, _BN), nn.MaxPool2d(3, 2, 1)]
    in_ch = 24
    for repeats, out_ch in zip((4, 8, 4), stages):
        layers += [_ShuffleUnit(in_ch, out_ch, 2), *(_ShuffleUnit(out_ch, out_ch, 1) for _ in range(repeats - 1))]
        in_ch = out_ch
    layers += _conv_bn_act(in_ch, last, 1, 1, 1, nn.ReLU, _BN)
    return _PoolTo(nn.Sequential(*layers), 1, nn.Linear(last, NUM_CLASSES))


# --- MNASNet-B1 (Tan et al. 2019, figure 7), torchvision layout; widths scaled by alpha ---------------------
# (kernel, stride, expansion, repeats) of the six stacks after the stem
_MNASNET = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))
_MNASNET_ALPHA = {"0_5": 0.5, "0_75": 0.75, "1_0": 1.0, "1_3": 1.3}


def mnasnet(alpha: float) -> nn.Module:
    depths = [_divisible_by_8(d * alpha) for d in (32, 16, 24, 40, 80, 96, 192, 320)]
    layers: list[nn.Module] = [*_conv_bn_act(3, depths[0], 3, 2, 1, nn.ReLU, _BN),
                               *_conv_bn_act(depths[0], depths[0], 3, 1, depths[0], nn.ReLU, _BN),
                               *_conv_bn_act(depths[0], depths[1], 1, 1, 1, None, _BN)]
    for (kernel, stride, expansion, repeats), in_ch, out_ch in zip(_MNASNET, depths[1:], depths[2:]):
        for i in range(repeats):
            cin = in_ch if i == 0 else out_ch
            layers.append(_InvertedResidual(cin, kernel, cin * expansion, out_ch, False, nn.ReLU,
                                            stride if i == 0 else 1, _BN))
    layers += _conv_bn_act(depths[-1], 1280, 1, 1, 1, nn.ReLU, _BN)
    return _PoolTo(nn.Sequential(*layers), 1, _head(1280))


# --- Swin Transformer (Liu et al. 2021), torchvision's V1 layout: (shifted) 7x7 window attention -----------
def _window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, window * window, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


class _WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias; a shifted block
    rolls the map by half a window first and masks pairs that were not neighbours before the roll."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("bias_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def _shift_mask(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """[windows, n, n]: 0 for pairs from the same region before the roll, -100 otherwise (torchvision)."""
        regions = like.new_zeros(h, w)
        cuts = ((0, -self.window), (-self.window, -self.shift), (-self.shift, None))
        for i, (h0, h1) in enumerate(cuts):
            for j, (w0, w1) in enumerate(cuts):
                regions[h0:h1, w0:w1] = 3 * i + j
        regions = _window_partition(regions[None, :, :, None], self.window)[..., 0]
        return (regions[:, None, :] - regions[:, :, None]).ne(0).to(like.dtype) * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        shift = self.shift if self.window < h else 0  # a window covering the whole map is not shifted
        if shift:
            x = torch.roll(x, (-shift, -shift), (1, 2))
        windows = _window_partition(x, self.window)
        n = windows.shape[1]
        q, k, v = self.qkv(windows).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # [heads, n, n]
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + bias
        if shift:
            attn = (attn.view(b, -1, self.heads, n, n) + self._shift_mask(h, w, attn)[None, :, None]).flatten(0, 1)
        out = self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c))
        out = out.view(b, h // self.window, w // self.window, self.window, self.window, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, h, w, c)
        return torch.roll(out, (shift, shift), (1, 2)) if shift else out


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _WindowAttention(dim, heads, window, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchMerging(nn.Module):
    """2x2 neighbouring patches concatenated (4C), LayerNorm, linear to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, dim: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int = 7):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (depth, n_heads) in enumerate(zip(depths, heads)):
            width = dim * 2**i
            layers += [_SwinBlock(width, n_heads, window, 0 if j % 2 == 0 else window // 2) for j in range(depth)]
            if i < len(depths) - 1:
                layers.append(_PatchMerging(width))
        self.patch_embed, self.patch_norm = nn.Conv2d(3, dim, 4, 4), nn.LayerNorm(dim)
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1))
        self.head = nn.Linear(dim * 2 ** (len(depths) - 1), NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(images).permute(0, 2, 3, 1))
        return self.head(self.norm(self.features(x)).mean((1, 2)))


_SWIN = {"t": (96, (2, 2, 6, 2), (3, 6, 12, 24)), "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
         "b": (128, (2, 2, 18, 2), (4, 8, 16, 32))}


# --- GoogLeNet (Szegedy et al. 2015, table 1), torchvision layout: BN after each conv, the 5x5 branch as 3x3 ---
_CONV_BN_RELU = partial(_conv_bn_act, groups=1, act=nn.ReLU, norm=partial(_BN, eps=0.001))


class _InceptionModule(nn.Module):
    """1x1 | 1x1 then 3x3 | 1x1 then 3x3 | 3x3 max-pool then 1x1, concatenated along the channels."""

    def __init__(self, in_ch: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(*_CONV_BN_RELU(in_ch, c1, 1, 1)),
            nn.Sequential(*_CONV_BN_RELU(in_ch, c3_reduce, 1, 1), *_CONV_BN_RELU(c3_reduce, c3, 3, 1)),
            nn.Sequential(*_CONV_BN_RELU(in_ch, c5_reduce, 1, 1), *_CONV_BN_RELU(c5_reduce, c5, 3, 1)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), *_CONV_BN_RELU(in_ch, pool_proj, 1, 1)),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


# Inception modules 3a-5b (Szegedy et al. 2015, table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj);
# "M" is a 3x3 stride-2 max-pool (2x2 before 5a, as torchvision).
_GOOGLENET = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M", (192, 96, 208, 16, 48, 64),
              (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
              (256, 160, 320, 32, 128, 128), "M2", (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))


def googlenet() -> nn.Module:
    """Without the auxiliary classifiers, as torchvision's published weights are (and their count)."""
    layers: list[nn.Module] = [*_CONV_BN_RELU(3, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True),
                               *_CONV_BN_RELU(64, 64, 1, 1), *_CONV_BN_RELU(64, 192, 3, 1),
                               nn.MaxPool2d(3, 2, ceil_mode=True)]
    in_ch = 192
    for row in _GOOGLENET:
        if row == "M":
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        elif row == "M2":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers.append(_InceptionModule(in_ch, *row))
            in_ch = row[0] + row[2] + row[4] + row[5]
    return _PoolTo(nn.Sequential(*layers), 1, _head(in_ch))


# --- RegNet X and Y (Radosavovic et al. 2020), torchvision layout: widths from (depth, w0, wa, wm, group width) ---
def _regnet_stages(depth: int, w0: int, wa: float, wm: float, group: int) -> list[tuple[int, int, int]]:
    """(width, blocks, group width) per stage: the linear widths w0 + wa * i quantized in log space to w0 * wm^k
    and to multiples of 8 (paper, eqs. 2-3), then each width made divisible by its group width (torchvision)."""
    caps = [round(math.log((i * wa + w0) / w0) / math.log(wm)) for i in range(depth)]
    widths = [int(round(w0 * wm**cap / 8) * 8) for cap in caps]
    stages = []
    for width in widths:
        if stages and stages[-1][0] == width:
            stages[-1][1] += 1
        else:
            stages.append([width, 1])
    out = []
    for width, blocks in stages:
        g = min(group, width)
        rounded = max(g, int(width + g / 2) // g * g)
        out.append((rounded + g if rounded < 0.9 * width else rounded, blocks, g))
    return out


class _RegNetBlock(nn.Module):
    """1x1, grouped 3x3 (stride), optional squeeze-excite to a quarter of the block's input width, 1x1; ReLU
    after the residual sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group: int, se: bool):
        super().__init__()
        layers = [*_conv_bn_act(in_ch, out_ch, 1, 1, 1, nn.ReLU, _BN),
                  *_conv_bn_act(out_ch, out_ch, 3, stride, out_ch // group, nn.ReLU, _BN)]
        if se:
            squeezed = int(round(0.25 * in_ch))
            layers.append(_SigmoidSqueezeExcite(out_ch, squeezed))
        self.f = nn.Sequential(*layers, *_conv_bn_act(out_ch, out_ch, 1, 1, 1, None, _BN))
        self.proj = (nn.Sequential(*_conv_bn_act(in_ch, out_ch, 1, stride, 1, None, _BN))
                     if in_ch != out_ch or stride != 1 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.proj(x) + self.f(x))


class _SigmoidSqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


def regnet(depth: int, w0: int, wa: float, wm: float, group: int, se: bool) -> nn.Module:
    layers: list[nn.Module] = [*_conv_bn_act(3, 32, 3, 2, 1, nn.ReLU, _BN)]
    in_ch = 32
    for width, blocks, g in _regnet_stages(depth, w0, wa, wm, group):
        layers += [_RegNetBlock(in_ch if i == 0 else width, width, 2 if i == 0 else 1, g, se) for i in range(blocks)]
        in_ch = width
    return _PoolTo(nn.Sequential(*layers), 1, nn.Linear(in_ch, NUM_CLASSES))


# (depth, w0, wa, wm, group width) of torchvision's regnet_{x,y}_NAME (Radosavovic et al. 2020, appendix tables)
_REGNET_Y = {"400mf": (16, 48, 27.89, 2.09, 8), "800mf": (14, 56, 38.84, 2.4, 16), "1_6gf": (27, 48, 20.71, 2.65, 24),
             "3_2gf": (21, 80, 42.63, 2.66, 24), "8gf": (17, 192, 76.82, 2.19, 56),
             "16gf": (18, 200, 106.23, 2.48, 112), "32gf": (20, 232, 115.89, 2.53, 232),
             "128gf": (27, 456, 160.83, 2.52, 264)}
_REGNET_X = {"400mf": (22, 24, 24.48, 2.54, 16), "800mf": (16, 56, 35.73, 2.28, 16), "1_6gf": (18, 80, 34.01, 2.25, 24),
             "3_2gf": (25, 88, 26.31, 2.25, 48), "8gf": (23, 80, 49.56, 2.88, 120),
             "16gf": (22, 216, 55.59, 2.1, 128), "32gf": (23, 320, 69.86, 2.0, 168)}


_VIT = {  # patch, hidden, layers, heads, MLP width (Dosovitskiy et al. 2021, table 1)
    "b_32": (32, 768, 12, 12, 3072), "l_16": (16, 1024, 24, 16, 4096), "l_32": (32, 1024, 24, 16, 4096),
    "h_14": (14, 1280, 32, 16, 5120),
}
_CONVNEXT_DEPTHS = (3, 3, 27, 3)  # Liu et al. 2022, Sec. 3: S, B and L share the depths
_CONVNEXT = {"small": (96, 192, 384, 768), "base": (128, 256, 512, 1024), "large": (192, 384, 768, 1536)}
# EfficientNet B1-B7 (width, depth) multipliers, as torchvision's efficientnet_bN give them
_EFFICIENTNET = {1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8), 5: (1.6, 2.2), 6: (1.8, 2.6),
                 7: (2.0, 3.1)}


def _resnets() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    he = "(He et al. 2016), torchvision v1.5 layout (stride on the 3x3 conv)."
    return {
        "resnet34": (partial(ResNet, (3, 4, 6, 3), False), "ResNet-34 " + he),
        "resnet101": (partial(ResNet, (3, 4, 23, 3), True), "ResNet-101 " + he),
        "resnet152": (partial(ResNet, (3, 8, 36, 3), True), "ResNet-152 " + he),
        "resnext50_32x4d": (partial(ResNet, (3, 4, 6, 3), True, 32, 4),
                            "ResNeXt-50 32x4d (Xie et al. 2017): 32-group 3x3 convs, 4 channels a group."),
        "resnext101_32x8d": (partial(ResNet, (3, 4, 23, 3), True, 32, 8),
                             "ResNeXt-101 32x8d (Xie et al. 2017): 32-group 3x3 convs, 8 channels a group."),
        "resnext101_64x4d": (partial(ResNet, (3, 4, 23, 3), True, 64, 4),
                             "ResNeXt-101 64x4d (Xie et al. 2017): 64-group 3x3 convs, 4 channels a group."),
        "wide_resnet50_2": (partial(ResNet, (3, 4, 6, 3), True, 1, 128),
                            "Wide ResNet-50-2 (Zagoruyko and Komodakis 2016): bottlenecks twice as wide."),
        "wide_resnet101_2": (partial(ResNet, (3, 4, 23, 3), True, 1, 128),
                             "Wide ResNet-101-2 (Zagoruyko and Komodakis 2016): bottlenecks twice as wide."),
    }


def _builders() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    builders = _resnets()
    for depth in _VGG:
        for bn in (False, True):
            builders[f"vgg{depth}{'_bn' if bn else ''}"] = (
                partial(vgg, depth, bn), f"VGG-{depth} (Simonyan and Zisserman 2015){' with batch norm' if bn else ''},"
                " torchvision layout: 3x3 convs, 7x7 adaptive pool, two 4096-wide layers.")
    builders["alexnet"] = (alexnet, "AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant.")
    for version in _SQUEEZENET:
        builders[f"squeezenet{version}"] = (partial(squeezenet, version),
                                            f"SqueezeNet {version.replace('_', '.')} (Iandola et al. 2016): Fire"
                                            " modules, 1x1-conv classifier, torchvision layout.")
    for b, (width, depth) in _EFFICIENTNET.items():
        builders[f"efficientnet_b{b}"] = (partial(EfficientNet, width, depth),
                                          f"EfficientNet-B{b} (Tan and Le 2019): B0 scaled by width {width}, depth"
                                          f" {depth}, torchvision layout; traced at 224x224.")
    for size in _EFFICIENTNET_V2:
        builders[f"efficientnet_v2_{size}"] = (partial(efficientnet_v2, size),
                                               f"EfficientNetV2-{size.upper()} (Tan and Le 2021): fused MBConv early"
                                               " stages, MBConv with squeeze-excite later, torchvision layout;"
                                               " traced at 224x224.")
    for size, dims in _CONVNEXT.items():
        builders[f"convnext_{size}"] = (partial(ConvNeXt, dims, _CONVNEXT_DEPTHS),
                                        f"ConvNeXt-{size[0].upper()} (Liu et al. 2022): channels {dims[0]}-{dims[-1]},"
                                        " blocks 3, 3, 27, 3, torchvision layout.")
    for name, (patch, dim, layers, heads, mlp) in _VIT.items():
        builders[f"vit_{name}"] = (partial(VisionTransformer, patch, dim, layers, heads, mlp),
                                   f"ViT-{name[0].upper()}/{patch} (Dosovitskiy et al. 2021): {layers} layers, hidden"
                                   f" {dim}, {heads} heads, {patch}x{patch} patches, torchvision layout.")
    for depth, (growth, blocks, stem) in _DENSENET.items():
        builders[f"densenet{depth}"] = (partial(densenet, growth, blocks, stem),
                                        f"DenseNet-{depth} (Huang et al. 2017), BC variant: growth rate {growth},"
                                        f" dense blocks of {', '.join(map(str, blocks))} layers, torchvision layout.")
    for width in _SHUFFLENET:
        builders[f"shufflenet_v2_{width}"] = (partial(shufflenet_v2, width),
                                              f"ShuffleNetV2 {width.replace('_', '.')[1:]}x (Ma et al. 2018):"
                                              " channel split and shuffle, torchvision layout.")
    for name, alpha in _MNASNET_ALPHA.items():
        builders[f"mnasnet{name}"] = (partial(mnasnet, alpha),
                                      f"MNASNet-B1 (Tan et al. 2019) at width {alpha}, torchvision layout.")
    for size, (dim, depths, heads) in _SWIN.items():
        builders[f"swin_{size}"] = (partial(SwinTransformer, dim, depths, heads),
                                    f"Swin-{size.upper()} (Liu et al. 2021): channels {dim}, blocks"
                                    f" {', '.join(map(str, depths))}, shifted 7x7 windows, torchvision layout.")
    for kind, table in (("y", _REGNET_Y), ("x", _REGNET_X)):
        for size, row in table.items():
            builders[f"regnet_{kind}_{size}"] = (partial(regnet, *row, se=kind == "y"),
                                                 f"RegNet{kind.upper()}-{size.upper().replace('_', '.')}"
                                                 " (Radosavovic et al. 2020), torchvision layout.")
    builders["googlenet"] = (googlenet, "GoogLeNet (Szegedy et al. 2015), torchvision layout: batch norm after each"
                                        " conv, 3x3 convs in the 5x5 branch, no auxiliary classifiers.")
    builders["mobilenet_v3_small"] = (partial(MobileNetV3, _MOBILENET_V3_SMALL, 1024),
                                      "MobileNetV3-Small (Howard et al. 2019), torchvision layout with"
                                      " squeeze-excite and hardswish.")
    return builders


BUILDERS = _builders()
