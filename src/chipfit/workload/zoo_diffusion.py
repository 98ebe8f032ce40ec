"""Latent text-to-image diffusion (Stable Diffusion) in plain PyTorch: diffusers' UNet2DConditionModel and the
frozen CLIP text encoder that conditions it, sized by the released config.json files. No weights, no diffusers.

The layout follows diffusers (Rombach et al. 2022 as released by CompVis, Stability AI and Hugging Face):
ResNet blocks with a timestep projection, Transformer2D blocks (GroupNorm, projection in, self-attention,
cross-attention to the text states, GEGLU feed-forward, projection out), stride-2 convolutions down, nearest
upsampling and a convolution up, skip connections concatenated on the way up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CROSS_ATTENTION_BLOCKS = ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D")
PLAIN_BLOCKS = ("DownBlock2D", "UpBlock2D")


@dataclass(frozen=True)
class UNetConfig:
    """The size-setting fields of a diffusers UNet2DConditionModel config.json, under their names there.

    attention_head_dim is, as diffusers reads it for these models, the number of attention heads of each level
    (a known misnomer of the config: SD 2's [5, 10, 20, 20] gives heads of 64 channels); an int is every level's.
    """

    block_out_channels: tuple[int, ...]
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    attention_head_dim: int | tuple[int, ...]
    cross_attention_dim: int
    use_linear_projection: bool = False
    transformer_layers_per_block: int | tuple[int, ...] = 1
    layers_per_block: int = 2
    in_channels: int = 4
    out_channels: int = 4
    sample_size: int = 64
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    addition_time_embed_dim: int | None = None  # SDXL's "text_time" conditioning on image sizes and crops
    projection_class_embeddings_input_dim: int | None = None

    def per_level(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        return (value,) * len(self.block_out_channels) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class TextEncoderConfig:
    """A CLIP text transformer (Radford et al. 2021) as a Hugging Face CLIPTextConfig sizes it; `layers` are the
    layers run (the penultimate-layer readout of SD 2 runs one fewer than the tower has), `projection` the pooled
    output's projection (SDXL's second encoder) or 0."""

    vocab_size: int
    max_position_embeddings: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str  # "quick_gelu" (OpenAI CLIP) or "gelu" (OpenCLIP)
    projection_dim: int = 0


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers' Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin] of t * 10000^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class _TimestepMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(in_dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _ResnetBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, in_ch, eps), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, out_ch)
        self.norm2, self.conv2 = nn.GroupNorm(groups, out_ch, eps), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        return self.conv_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    """diffusers' Attention: bias-free q, k, v projections (k, v from `kv_dim`: the text states for cross-attention),
    scaled dot-product attention over `heads`, an output projection with bias."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k, self.to_v = (nn.Linear(kv_dim or dim, dim, bias=False) for _ in range(2))
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        q, k, v = (t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        return self.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class _TransformerBlock(nn.Module):
    """diffusers' BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward (4x), each pre-norm."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in, self.ff_out = nn.Linear(dim, 8 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        h, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(h * F.gelu(gate))


class _Transformer2D(nn.Module):
    """diffusers' Transformer2DModel: GroupNorm, projection in (a linear layer or a 1x1 convolution), transformer
    blocks over the h*w positions, projection out, residual."""

    def __init__(self, channels: int, heads: int, layers: int, context_dim: int, linear: bool, groups: int):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        project = (lambda: nn.Linear(channels, channels)) if linear else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = project()
        self.transformer_blocks = nn.ModuleList(_TransformerBlock(channels, heads, context_dim) for _ in range(layers))
        self.proj_out = project()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        # One copy to positions-major at any batch (diffusers' reshape copies from batch 2 on), so traces at
        # batch 1 and 2 run the same operators.
        h = h.permute(0, 2, 3, 1).contiguous().view(b, hh * ww, c)
        if self.linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return x + (h if self.linear else self.proj_out(h))


class _Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet2DCondition(nn.Module):
    """The denoiser: (latents [b, in, s, s], timesteps [b], text states [b, tokens, cross_attention_dim]) -> noise
    (or v) prediction [b, out, s, s]; SDXL's also takes the pooled text embedding and the six size/crop ids."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        ch, groups, eps = cfg.block_out_channels, cfg.norm_num_groups, cfg.norm_eps
        heads, depth = cfg.per_level(cfg.attention_head_dim), cfg.per_level(cfg.transformer_layers_per_block)
        self.cfg, temb = cfg, 4 * ch[0]
        self.time_embedding = _TimestepMLP(ch[0], temb)
        self.add_embedding = (_TimestepMLP(cfg.projection_class_embeddings_input_dim, temb)
                              if cfg.addition_time_embed_dim else None)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        def attention(kind: str, c: int, level: int) -> nn.Module | None:
            return (_Transformer2D(c, heads[level], depth[level], cfg.cross_attention_dim, cfg.use_linear_projection,
                                   groups) if kind in CROSS_ATTENTION_BLOCKS else None)

        self.down, skips, c = nn.ModuleList(), [ch[0]], ch[0]
        for level, kind in enumerate(cfg.down_block_types):
            for _ in range(cfg.layers_per_block):
                self.down.append(_ResnetBlock(c, ch[level], temb, groups, eps))
                c = ch[level]
                if (attn := attention(kind, c, level)) is not None:
                    self.down.append(attn)
                skips.append(c)
            if level != len(ch) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([_ResnetBlock(c, c, temb, groups, eps), attention(CROSS_ATTENTION_BLOCKS[0], c, -1),
                                  _ResnetBlock(c, c, temb, groups, eps)])
        self.up = nn.ModuleList()
        for level, kind in zip(reversed(range(len(ch))), cfg.up_block_types):
            for _ in range(cfg.layers_per_block + 1):
                self.up.append(_ResnetBlock(c + skips.pop(), ch[level], temb, groups, eps))
                c = ch[level]
                if (attn := attention(kind, c, level)) is not None:
                    self.up.append(attn)
            if level:
                self.up.append(_Upsample(c))
        self.conv_norm_out, self.conv_out = nn.GroupNorm(groups, c, eps), nn.Conv2d(c, cfg.out_channels, 3, padding=1)

    def _run(self, layers: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
             skips: list[torch.Tensor] | None, push: bool) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, _ResnetBlock):
                h = layer(torch.cat([h, skips.pop()], 1) if skips is not None and not push else h, temb)
            elif isinstance(layer, _Transformer2D):
                h = layer(h, context)
            else:
                h = layer(h)
            if push and isinstance(layer, _Transformer2D):
                skips[-1] = h
            elif push:
                skips.append(h)
        return h

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                text_embeds: torch.Tensor | None = None, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        # The embedding is computed in fp32 and cast to the latents' dtype, as diffusers does.
        temb = self.time_embedding(timestep_embedding(timesteps, self.cfg.block_out_channels[0]).to(latents.dtype))
        if self.add_embedding is not None:
            sizes = timestep_embedding(time_ids, self.cfg.addition_time_embed_dim).flatten(1)
            temb = temb + self.add_embedding(torch.cat([text_embeds, sizes.to(text_embeds.dtype)], dim=-1))
        h = self.conv_in(latents)
        skips = [h]
        h = self._run(self.down, h, temb, context, skips, push=True)
        h = self._run(self.mid, h, temb, context, None, push=False)
        h = self._run(self.up, h, temb, context, skips, push=False)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class _CLIPLayer(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        d, self.heads = cfg.hidden_size, cfg.num_attention_heads
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, cfg.intermediate_size), nn.Linear(cfg.intermediate_size, d)
        self.quick_gelu = cfg.hidden_act == "quick_gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.layer_norm1(x)
        q, k, v = (p(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        x = x + self.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, d))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return x + self.fc2(h)


class CLIPTextEncoder(nn.Module):
    """Token ids [b, tokens] -> text states [b, tokens, hidden] (the final layer norm applied), and with a projection
    also the pooled, projected embedding [b, projection_dim] of the last token."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.layers = nn.ModuleList(_CLIPLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size)
        self.text_projection = (nn.Linear(cfg.hidden_size, cfg.projection_dim, bias=False)
                                if cfg.projection_dim else None)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        x = self.final_layer_norm(x)
        pooled = self.text_projection(x[:, -1]) if self.text_projection is not None else None
        return x, pooled


class TextToImageDenoiser(nn.Module):
    """One denoising step of a latent text-to-image model. Training encodes the captions with the frozen text
    encoder(s) every step, as the reference trainers do, and trains the UNet; inference is one UNet call of a sampler,
    given the text states the pipeline computed once per image. Several encoders' states are concatenated (SDXL)."""

    def __init__(self, unet: UNetConfig, text_encoders: tuple[TextEncoderConfig, ...]):
        super().__init__()
        self.unet = UNet2DCondition(unet)
        self.text_encoders = nn.ModuleList(CLIPTextEncoder(cfg) for cfg in text_encoders).requires_grad_(False)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, token_ids: torch.Tensor, context: torch.Tensor,
                text_embeds: torch.Tensor | None = None, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                encoded = [encoder(token_ids) for encoder in self.text_encoders]
            context = torch.cat([states for states, _ in encoded], dim=-1).to(latents.dtype)
            pooled = [p for _, p in encoded if p is not None]
            if pooled:  # SDXL: the projected embedding of its second encoder
                text_embeds = pooled[-1].to(latents.dtype)
        return self.unet(latents, timesteps, context, text_embeds, time_ids)


def text_to_image_batch(unet: UNetConfig, text_encoders: tuple[TextEncoderConfig, ...], steps: int, batch: int,
                        dtype: torch.dtype, device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(inputs, target) of TextToImageDenoiser: noised latents, timesteps drawn from range(steps), caption token ids,
    the captions' text states, for SDXL the pooled text embedding and six size/crop ids; the noise as target."""
    tokens = text_encoders[0].max_position_embeddings
    shape = (batch, unet.in_channels, unet.sample_size, unet.sample_size)
    latents = torch.randn(*shape, dtype=dtype, device=device)
    inputs = (latents, torch.randint(0, steps, (batch,), device=device),
              torch.randint(0, text_encoders[0].vocab_size, (batch, tokens), device=device),
              torch.randn(batch, tokens, unet.cross_attention_dim, dtype=dtype, device=device))
    if unet.addition_time_embed_dim:
        pooled = unet.projection_class_embeddings_input_dim - 6 * unet.addition_time_embed_dim
        inputs += (torch.randn(batch, pooled, dtype=dtype, device=device),
                   torch.randint(0, 1024, (batch, 6), device=device).to(dtype))
    return inputs, torch.randn(batch, unet.out_channels, unet.sample_size, unet.sample_size, dtype=dtype,
                               device=device)


# --- Released configs (the config.json of each hub repository's unet/ and text_encoder*/ folders) -----------------
_SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
# OpenAI CLIP ViT-L/14's text tower (SD 1.x; SDXL's first encoder).
CLIP_VIT_L_TEXT = TextEncoderConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072, hidden_act="quick_gelu")

SD_1_5 = (UNetConfig(block_out_channels=(320, 640, 1280, 1280), down_block_types=_SD_DOWN, up_block_types=_SD_UP,
                     attention_head_dim=8, cross_attention_dim=768),
          (CLIP_VIT_L_TEXT,))
# SD 2 reads OpenCLIP ViT-H/14's text tower at its penultimate layer: the released text_encoder holds 23 of its 24.
SD_2_BASE = (UNetConfig(block_out_channels=(320, 640, 1280, 1280), down_block_types=_SD_DOWN, up_block_types=_SD_UP,
                        attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True),
             (TextEncoderConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=1024, num_hidden_layers=23,
                                num_attention_heads=16, intermediate_size=4096, hidden_act="gelu"),))
SDXL_BASE = (UNetConfig(block_out_channels=(320, 640, 1280), down_block_types=("DownBlock2D", *_SD_DOWN[1:3]),
                        up_block_types=(*_SD_UP[1:3], "UpBlock2D"), attention_head_dim=(5, 10, 20),
                        cross_attention_dim=2048, use_linear_projection=True, transformer_layers_per_block=(1, 2, 10),
                        sample_size=128, addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
             (CLIP_VIT_L_TEXT,
              TextEncoderConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=1280, num_hidden_layers=32,
                                num_attention_heads=20, intermediate_size=5120, hidden_act="gelu",
                                projection_dim=1280)))
