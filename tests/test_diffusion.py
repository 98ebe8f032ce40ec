"""Stable Diffusion in the zoo: parameter counts of the UNets and text encoders, FLOPs of a convolution and a
cross-attention block by hand, what a training step runs (the frozen text encoder forward only), the library's
hub ids, the MLPerf row's name, and the profile and compare commands."""

from __future__ import annotations

import json

import pytest
from torch._subclasses.fake_tensor import FakeTensorMode

from chipfit.cli import main
from chipfit.errors import ChipfitError
from chipfit.row_lookup import resolve_row_model
from chipfit.workload import profile, zoo
from chipfit.workload import zoo_diffusion as diffusion
from chipfit.workload.library import resolve_model

SD2 = "stable-diffusion-2-base"


@pytest.fixture(scope="module")
def sd2_infer():
    return profile(SD2, mode="infer", batch=1, precision="fp32")


@pytest.fixture(scope="module")
def sd2_train():
    return profile(SD2, mode="train", batch=1, precision="bf16")


@pytest.mark.parametrize("config, counts", [
    # The UNet, then each text encoder: diffusers' num_parameters docstring (SD 1.5 UNet) and public summaries of
    # the released checkpoints (CLIP ViT-L/14 text 123,060,480; SD 2's 23-layer OpenCLIP ViT-H text 340,387,840;
    # SDXL's OpenCLIP ViT-bigG text with projection 694,659,840).
    (diffusion.SD_1_5, (859_520_964, 123_060_480)),
    (diffusion.SD_2_BASE, (865_910_724, 340_387_840)),
    (diffusion.SDXL_BASE, (2_567_463_684, 123_060_480, 694_659_840)),
], ids=["sd-1.5", "sd-2", "sdxl"])
def test_unet_and_text_encoders_have_the_released_parameter_counts(config, counts):
    with FakeTensorMode():
        model = diffusion.TextToImageDenoiser(*config)
    parts = (model.unet, *model.text_encoders)
    assert tuple(sum(p.numel() for p in part.parameters()) for part in parts) == counts
    assert not any(p.requires_grad for e in model.text_encoders for p in e.parameters())


def _flops(prof, prefix: str) -> float:
    return sum(op.flops for op in prof.ops if op.module.startswith(prefix))


def test_a_convolution_and_a_cross_attention_block_by_hand(sd2_infer):
    # conv_in: 4 -> 320 channels, 3x3, on 64x64 latents: 2 FLOPs a multiply-add plus the bias.
    assert _flops(sd2_infer, "unet.conv_in") == 2 * 64 * 64 * 320 * 4 * 9 + 64 * 64 * 320
    # The first cross-attention: 4096 positions of 320 channels (5 heads of 64) attend to 77 text states of 1024.
    q, kv, d, ctx = 64 * 64, 77, 320, 1024
    projections = 2 * q * d * d + 2 * (2 * kv * ctx * d) + (2 * q * d * d + q * d)  # to_q, to_k, to_v, to_out+bias
    scores_and_values = 2 * (2 * q * kv * d)
    assert _flops(sd2_infer, "unet.down.1.transformer_blocks.0.attn2") == projections + scores_and_values


def test_inference_is_one_unet_call_and_training_runs_the_frozen_text_encoder_forward_only(sd2_infer, sd2_train):
    assert not any(op.module.startswith("text_encoders") for op in sd2_infer.ops)
    text = [op for op in sd2_train.ops if op.module.startswith("text_encoders")]
    assert text and {op.phase for op in text} == {"forward"}
    # 23 layers of 4 projections (1024^2) and a 4x MLP over 77 tokens, a multiply-add 2 FLOPs: the matmuls.
    layer_matmuls = 2 * 77 * (4 * 1024 * 1024 + 2 * 1024 * 4096)
    assert sum(op.flops for op in text if op.kind == "matmul") == pytest.approx(23 * layer_matmuls, rel=0.001)
    assert sd2_train.trainable_params == 865_910_724
    assert sd2_train.params == 865_910_724 + 340_387_840
    optimized = {op.module.split(".")[0] for op in sd2_train.ops if op.phase == "optimizer"}
    assert optimized == {"unet"}


def test_hub_ids_and_the_mlperf_row_name_resolve():
    assert resolve_model("stabilityai/stable-diffusion-2-base").name == SD2
    assert resolve_model("runwayml/stable-diffusion-v1-5").name == "stable-diffusion-v1-5"
    assert resolve_model("stabilityai/stable-diffusion-xl-base-1.0").name == "stable-diffusion-xl-base-1.0"
    assert resolve_model("sd-2-unet").zoo == SD2
    row = resolve_row_model("Stable Diffusion v2 (MLPerf, 512x512, UNet 865M)")
    assert row.traced == SD2 and row.params == 865_910_724 and not row.sequence
    assert zoo.get(SD2).task == "text-to-image" and resolve_model(SD2).kind == "diffusion"


def test_profile_and_compare_commands(capsys):
    assert main(["profile", "sd-2-unet", "--infer", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == SD2 and out["trainable_params"] == 865_910_724 and out["flops"]["backward"] == 0
    assert main(["compare", "sd-2-unet", "--infer", "--batch", "2", "--hardware", "nvidia-h100-sxm5-80gb",
                 "--no-local", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)["estimates"][0]
    assert est["hardware"] == "nvidia-h100-sxm5-80gb" and est["fits"] and est["step_time_s"] > 0


def test_a_sequence_length_is_refused():
    with pytest.raises(ChipfitError, match="takes images, not sequences"):
        zoo.get(SD2).make_batch(1, 77)
