"""The built-in model zoo: well-known architectures in plain PyTorch, no downloads.

Build under fake tensors to profile without memory (`with FakeTensorMode(): model =
entry.build()`); the large LLMs would need their full weight memory if built for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChipfitError, closest
from . import library
from . import zoo_diffusion as diffusion
from . import zoo_transformers as tx
from . import zoo_vision as vision
from . import zoo_vision_more as vision_more

TASKS = ("image-classification", "image-denoising", "text-to-image", "masked-lm", "causal-lm")


DIFFUSION_STEPS = 1000  # T of DDPM (Ho et al. 2020, Sec. 4); timesteps are drawn from range(T)


def checked_seq_len(name: str, seq: int, max_seq_len: int | None) -> int:
    """`seq` if model `name` can take it (positive, within its learned positions); else a ChipfitError."""
    if seq < 1:
        raise ChipfitError(f"Sequence length {seq} for model '{name}' is not positive; give 1 or more.")
    if max_seq_len is not None and seq > max_seq_len:
        raise ChipfitError(
            f"Sequence length {seq} exceeds the {max_seq_len} positions model '{name}' has; give {max_seq_len} or fewer."
        )
    return seq


@dataclass(frozen=True)
class ZooEntry:
    """A named architecture, how to feed it, and the parameter count it is published with."""

    name: str
    task: str  # one of TASKS
    build: Callable[[], nn.Module]
    default_seq_len: int | None  # None for vision models
    published_params: int
    params_source: str
    description: str
    vocab_size: int | None = None  # language models: token ids are drawn from range(vocab_size)
    max_seq_len: int | None = None  # learned position embeddings cap the sequence; None when unbounded
    # Model-specific random (inputs, targets): batch, dtype, device -> ...; None for the task's own.
    inputs: Callable[[int, torch.dtype, torch.device | str | None], tuple[tuple, torch.Tensor]] | None = None

    def make_batch(
        self,
        batch: int,
        seq_len: int | None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(model inputs, targets) as random tensors created in the current torch mode.

        Images are float `dtype` [batch, 3, 224, 224] with labels [batch]; language models get
        token ids [batch, seq] and per-token targets [batch, seq]; a denoiser gets noised images
        [batch, 3, 32, 32] and timesteps [batch], with the noise as target; a text-to-image model gets
        what `inputs` makes. seq_len None means default_seq_len.
        """
        if batch < 1:
            raise ChipfitError(f"Batch {batch} for model '{self.name}' is not positive; give a batch of 1 or more.")
        if self.task in ("image-classification", "image-denoising", "text-to-image"):
            if seq_len is not None:
                raise ChipfitError(f"Model '{self.name}' takes images, not sequences; leave the sequence length out.")
            if self.inputs is not None:
                return self.inputs(batch, dtype, device)
            if self.task == "image-denoising":
                size = vision.DDPM_IMAGE_SIZE
                images = torch.randn(batch, 3, size, size, dtype=dtype, device=device)
                steps = torch.randint(0, DIFFUSION_STEPS, (batch,), device=device)
                return (images, steps), torch.randn(batch, 3, size, size, dtype=dtype, device=device)
            size = vision.IMAGE_SIZE
            images = torch.randn(batch, 3, size, size, dtype=dtype, device=device)
            return (images,), torch.randint(0, vision.NUM_CLASSES, (batch,), device=device)
        seq = checked_seq_len(self.name, self.default_seq_len if seq_len is None else seq_len, self.max_seq_len)
        ids = torch.randint(0, self.vocab_size, (batch, seq), device=device)
        return (ids,), torch.randint(0, self.vocab_size, (batch, seq), device=device)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over classes (vision) or over the vocabulary at every position (LMs).

        Causal-LM targets are taken as already shifted (target t is the token after input t); a
        denoiser's loss is the mean squared error of the predicted noise (Ho et al. 2020, eq. 14), or of v.
        """
        if self.task in ("image-denoising", "text-to-image"):
            return F.mse_loss(output, targets)
        if self.task == "image-classification":
            return F.cross_entropy(output, targets)
        return F.cross_entropy(output.flatten(0, 1), targets.flatten())


def _published(name: str) -> tuple[int, str]:
    """The published parameter count of a zoo model and its source, from the model library."""
    entry = library.resolve_model(name)
    return entry.published_params, entry.params_source


def _vision(name: str, build: Callable[[], nn.Module], description: str) -> ZooEntry:
    return ZooEntry(name, "image-classification", build, None, *_published(name),
                    description + " 1000 ImageNet classes, 224x224 RGB input.")


def _spec(name: str):
    return library.resolve_model(name).spec


def _llama(name: str) -> Callable[[], nn.Module]:
    """The Llama-layout module of library model `name` (config.json sizes and rope_theta)."""
    entry = library.resolve_model(name)
    s = entry.spec
    cfg = tx.LlamaConfig(vocab=s.vocab, dim=s.hidden, ffn_dim=s.ffn, layers=s.layers, heads=s.heads,
                         kv_heads=s.kv_heads, rope_theta=entry.rope_theta, experts=s.experts, top_k=s.top_k)
    return partial(tx.LlamaLM, cfg)


def _text(name: str, task: str, build: Callable[[], nn.Module], default_seq_len: int, description: str,
          bounded: bool = False) -> ZooEntry:
    """A language model of the zoo; its vocabulary (and learned positions, if bounded) from the library."""
    spec = _spec(name)
    return ZooEntry(name, task, build, default_seq_len, *_published(name), description, vocab_size=spec.vocab,
                    max_seq_len=spec.max_positions if bounded else None)


def _text_to_image(name: str, config: tuple, description: str) -> ZooEntry:
    """A latent text-to-image model of the zoo from its (UNet, text encoders) configs; its UNet's published count."""
    unet, encoders = config
    return ZooEntry(name, "text-to-image", partial(diffusion.TextToImageDenoiser, unet, encoders), None,
                    *_published(name), description + _TEXT_TO_IMAGE_NOTE,
                    inputs=partial(diffusion.text_to_image_batch, unet, encoders, DIFFUSION_STEPS))


_TEXT_TO_IMAGE_NOTE = (
    " A training step encodes the 77-token captions with the frozen text encoder (forward only, every step, as the"
    " reference trainers do) and trains the UNet (forward, backward, AdamW) to predict the noise at timesteps drawn"
    " from 1000; the VAE is not run (latents are precomputed, as the MLPerf reference trains from stored VAE"
    " moments). Inference is one UNet call of a sampler on a batch of latents, the text states given: classifier-"
    "free guidance makes 2 latents per image, and an image at 50 sampling steps is 50 such calls."
)
_LLAMA_NOTE = (
    " RMSNorm, rotary position embeddings, SwiGLU MLP, untied LM head, causal attention;"
    " the LM head is computed at every position."
)
_MOE_NOTE = (
    " Routing assumption: router logits, softmax and top-2 are computed, but since which expert a"
    " token reaches depends on the data, every expert is given tokens*2/8 tokens (perfectly"
    " balanced routing), so each token costs exactly two experts."
)
_WINDOW_NOTE = (
    " Its 4096-token sliding window is not applied: attention is full causal, an upper bound on"
    " attention cost for sequences longer than 4096."
)
_BERT, _GPT2 = _spec("bert-base-uncased"), _spec("gpt2")

_ENTRIES = (
    _vision("resnet18", vision.resnet18, "ResNet-18 (He et al. 2016), torchvision layout."),
    _vision("resnet50", vision.resnet50,
            "ResNet-50 (He et al. 2016), torchvision v1.5 layout (stride on the 3x3 conv)."),
    _vision("mobilenet_v2", vision.mobilenet_v2,
            "MobileNetV2 (Sandler et al. 2018), torchvision layout: inverted residuals, ReLU6, width 1.0."),
    _vision("mobilenet_v3_large", vision.mobilenet_v3_large,
            "MobileNetV3-Large (Howard et al. 2019), torchvision layout with squeeze-excite and hardswish."),
    _vision("vit_b_16", vision.vit_b_16,
            "ViT-B/16 (Dosovitskiy et al. 2021), torchvision layout: 12 layers, hidden 768, 16x16 patches."),
    _vision("efficientnet_b0", vision.efficientnet_b0,
            "EfficientNet-B0 (Tan and Le 2019), torchvision layout: MBConv blocks with squeeze-excite, SiLU."),
    _vision("convnext_tiny", vision.convnext_tiny,
            "ConvNeXt-T (Liu et al. 2022), torchvision layout: 7x7 depthwise convs, LayerNorm, 4x MLP, layer scale."),
    ZooEntry("ddpm-unet", "image-denoising", vision.ddpm_unet, None, *_published("ddpm-unet"),
             "DDPM U-Net (Ho et al. 2020), CIFAR-10 model: 32x32 RGB, channels 128 x (1, 2, 2, 2), two residual"
             " blocks per level, self-attention at 16x16, sinusoidal timestep embedding; trained to predict the"
             " noise (mean squared error) at timesteps drawn from 1000."),
    *(_vision(name, build, description) for name, (build, description) in vision_more.BUILDERS.items()),
    _text_to_image("stable-diffusion-v1-5", diffusion.SD_1_5,
                   "Stable Diffusion v1.5 (Rombach et al. 2022): UNet of channels 320, 640, 1280, 1280, two ResNet"
                   " blocks per level, 8-head attention (1x1-convolution projections) cross-attending to the"
                   " 768-dim states of CLIP ViT-L/14's text encoder; 64x64x4 latents (512x512 images)."),
    _text_to_image("stable-diffusion-2-base", diffusion.SD_2_BASE,
                   "Stable Diffusion 2 base: the SD 1.5 UNet with 64-channel attention heads, linear projections and"
                   " cross-attention to the 1024-dim states of OpenCLIP ViT-H/14's text encoder (23 layers, its"
                   " penultimate); 64x64x4 latents (512x512 images)."),
    _text_to_image("stable-diffusion-xl-base-1.0", diffusion.SDXL_BASE,
                   "Stable Diffusion XL base 1.0 (Podell et al. 2023): UNet of channels 320, 640, 1280 with 2 and 10"
                   " transformer blocks at the two lower resolutions, cross-attending to the concatenated states of"
                   " CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 (2048-dim), conditioned on the pooled text embedding and"
                   " the image size and crop; 128x128x4 latents (1024x1024 images)."),
    _text(
        "bert-base-uncased", "masked-lm",
        partial(tx.BertMaskedLM, vocab=_BERT.vocab, dim=_BERT.hidden, layers=_BERT.layers, heads=_BERT.heads,
                ffn_dim=_BERT.ffn, max_positions=_BERT.max_positions, token_types=_BERT.token_types), 512,
        "BERT-base uncased: 12 layers, hidden 768, 12 heads, vocab 30522, 512 positions, 2 token types."
        " Trained as a masked LM on every position with logits = hidden @ word_embeddings.T (tied, no"
        " extra parameters; Hugging Face's MLM transform and bias are left out). The pooler is counted"
        " but unused by this objective.", bounded=True,
    ),
    _text(
        "gpt2", "causal-lm",
        partial(tx.GPT2LM, vocab=_GPT2.vocab, dim=_GPT2.hidden, layers=_GPT2.layers, heads=_GPT2.heads,
                max_positions=_GPT2.max_positions), 1024,
        "GPT-2 small: 12 layers, hidden 768, 12 heads, vocab 50257, 1024 positions, LM head tied to"
        " the token embedding.", bounded=True,
    ),
    _text("llama-2-7b", "causal-lm", _llama("llama-2-7b"), 4096,
          "Llama 2 7B (Touvron et al. 2023): 32 layers, hidden 4096, 32 heads, ffn 11008, vocab 32000." + _LLAMA_NOTE),
    _text("llama-3-8b", "causal-lm", _llama("llama-3-8b"), 8192,
          "Llama 3 8B: 32 layers, hidden 4096, 32 heads with 8 KV heads (GQA), ffn 14336, vocab 128256." + _LLAMA_NOTE),
    _text("llama-3-70b", "causal-lm", _llama("llama-3-70b"), 8192,
          "Llama 3 70B: 80 layers, hidden 8192, 64 heads with 8 KV heads (GQA), ffn 28672, vocab 128256."
          + _LLAMA_NOTE),
    _text("mistral-7b", "causal-lm", _llama("mistral-7b"), 8192,
          "Mistral 7B v0.1 (Jiang et al. 2023): 32 layers, hidden 4096, 32 heads with 8 KV heads (GQA),"
          " ffn 14336, vocab 32000." + _LLAMA_NOTE + _WINDOW_NOTE),
    _text("mixtral-8x7b", "causal-lm", _llama("mixtral-8x7b"), 32768,
          "Mixtral 8x7B v0.1 (Jiang et al. 2024): 32 layers, hidden 4096, 32 heads with 8 KV heads (GQA),"
          " 8 SwiGLU experts of ffn 14336 per layer, top-2 routing, vocab 32000." + _LLAMA_NOTE + _MOE_NOTE),
)

ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in _ENTRIES}


def get(name: str) -> ZooEntry:
    """The zoo entry called `name` (case-insensitive)."""
    entry = ZOO.get(name.lower())
    if entry is None:
        raise ChipfitError(
            f"Unknown model {name!r}.{closest(name, ZOO)} `chipfit models` lists the known names;"
            " or give a module as 'package.module:factory'."
        )
    return entry
