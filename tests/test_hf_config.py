"""Hugging Face config.json sources: built with transformers on fake tensors, checked against the
zoo and against parameter counts derived by hand from the published configs."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from chipfit.errors import ChipfitError
from chipfit.workload import zoo
from chipfit.workload.source import profile, resolve

pytest.importorskip("transformers")
from chipfit.workload.hf_config import ARCHITECTURES, HFConfigModel  # noqa: E402

HF = Path(__file__).parent / "fixtures" / "hf"


def _copy(name: str, tmp_path: Path, **changes) -> Path:
    data = json.loads((HF / name / "config.json").read_text())
    data.update(changes)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data))
    return folder


# Published configs -> parameter counts. Hand derivations:
# qwen2-7b: embed and untied head 2*152064*3584; per layer q 3584^2+3584, k and v 3584*512+512,
#   o 3584^2, MLP 3*3584*18944, two norms 2*3584 = 233,057,792; x28, + final norm 3584.
# t5-small: shared 32128*512; encoder blocks 4*512^2 + 2*512*2048 + 2*512 = 3,146,752 x6,
#   decoder blocks 8*512^2 + 2*512*2048 + 3*512 = 4,195,840 x6, two relative biases 32*8 and
#   two final norms 512 each; LM head tied.
# bert (BertForMaskedLM): BertModel 109,482,240 - pooler (768^2+768) + MLM transform (768^2+768)
#   + its LayerNorm 2*768 + decoder bias 30522 (decoder weight tied).
PUBLISHED = {
    "llama-3-8b": zoo.get("llama-3-8b").published_params,  # 8,030,261,248
    "mistral-7b": zoo.get("mistral-7b").published_params,  # 7,241,732,096
    "gpt2": zoo.get("gpt2").published_params,  # 124,439,808
    "vit-base-patch16-224": zoo.get("vit_b_16").published_params,  # 86,567,656: same layout as torchvision's
    "qwen2-7b": 2 * 152064 * 3584 + 28 * 233_057_792 + 3584,
    "t5-small": 32128 * 512 + 6 * 3_146_752 + 6 * 4_195_840 + 2 * 32 * 8 + 2 * 512,
    "gemma-7b": 8_537_680_896,  # huggingface.co/google/gemma-7b safetensors count; head tied to the embedding
    "bert-base-uncased": 109_482_240 + 2 * 768 + 30522,
}


def test_hand_derived_counts_match_the_published_ones():
    assert PUBLISHED["qwen2-7b"] == 7_615_616_512
    assert PUBLISHED["t5-small"] == 60_506_624
    assert PUBLISHED["bert-base-uncased"] == 109_514_298


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_real_size_configs_count_their_published_parameters(name):
    seq = None if name.startswith("vit") else 8
    prof = profile(str(HF / name / "config.json"), mode="infer", seq_len=seq)
    assert prof.params == PUBLISHED[name]
    assert prof.model == name
    assert prof.uncounted == {}


def test_bert_base_model_matches_the_zoo_params_exactly_and_forward_flops_within_1_percent(tmp_path):
    seq = 128
    hf = profile(str(_copy("bert-base-uncased", tmp_path, architectures=["BertModel"])), mode="infer", seq_len=seq)
    ours = profile("bert-base-uncased", mode="infer", seq_len=seq)
    assert hf.params == ours.params == 109_482_240
    # The zoo adds a tied LM head (2*S*768*30522) and skips the pooler, which BertModel runs on the
    # first token: 2*768^2 for the matmul, 768 bias adds and 768 tanh.
    zoo_encoder = ours.flops("forward") - 2 * seq * 768 * 30522
    hf_encoder = hf.flops("forward") - (2 * 768 * 768 + 768 + 768)
    assert hf_encoder == pytest.approx(zoo_encoder, rel=0.01)


def test_llama_3_8b_config_matches_the_zoo_entry():
    hf = profile(str(HF / "llama-3-8b"), mode="infer", seq_len=4)
    ours = profile("llama-3-8b", mode="infer", seq_len=4)
    assert hf.params == ours.params == 8_030_261_248
    assert hf.flops("forward") == pytest.approx(ours.flops("forward"), rel=0.01)


def test_tiny_llama_matmul_and_attention_flops_by_hand():
    prof = profile(str(HF / "tiny-llama"), mode="infer", seq_len=16)
    kinds = prof.by_kind()
    # Per token per layer: q 64x64, k and v 64x32 (2 KV heads of 16), o 64x64, SwiGLU 3*64*128;
    # then the LM head 64x256. 2 FLOPs per multiply-add, 16 tokens, 2 layers.
    per_token = 2 * 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128) + 2 * 64 * 256
    assert kinds["matmul"]["flops"] == 16 * per_token == 2_883_584
    # Attention: 4*B*H*S*S*D per layer (QK^T and PV), 4 heads of 16.
    assert kinds["attention"]["flops"] == 2 * 4 * 4 * 16 * 16 * 16


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-mistral", "tiny-qwen2", "tiny-gemma", "tiny-gpt2", "tiny-bert",
                                  "tiny-t5", "tiny-vit"])
def test_small_configs_train_with_their_own_loss(name):
    seq = None if name.endswith("vit") else 8
    prof = profile(str(HF / name), mode="train", seq_len=seq, batch=2)
    assert prof.flops("backward") > prof.flops("forward") > 0
    assert prof.flops("optimizer") > 0
    assert prof.uncounted == {}
    # The head's own loss (cross-entropy) is traced: log_softmax is among the forward ops.
    assert any("log_softmax" in op.name for op in prof.ops if op.phase == "forward")


def test_t5_gets_encoder_and_decoder_inputs():
    prof = profile(str(HF / "tiny-t5"), mode="infer", seq_len=8)
    tops = {op.module.split(".")[0] for op in prof.ops}
    assert {"encoder", "decoder", "lm_head"} <= tops


def test_vit_takes_images_not_sequences():
    with pytest.raises(ChipfitError, match="takes images, not sequences"):
        profile(str(HF / "tiny-vit"), mode="infer", seq_len=8)


def test_learned_positions_cap_the_sequence():
    with pytest.raises(ChipfitError, match="Sequence length 200 exceeds the 128 positions"):
        profile(str(HF / "tiny-bert"), mode="infer", seq_len=200)


def test_default_sequence_is_the_config_context():
    assert resolve(str(HF / "gpt2")).default_seq_len == 1024
    assert resolve(str(HF / "llama-3-8b" / "config.json")).default_seq_len == 8192
    assert resolve(str(HF / "vit-base-patch16-224")).default_seq_len is None


def test_mixtral_routing_is_explained_with_the_zoo_entry():
    with pytest.raises(ChipfitError) as err:
        profile(str(HF / "tiny-mixtral"), mode="infer", seq_len=8)
    message = str(err.value)
    assert "routing depends on the data" in message and "'mixtral-8x7b'" in message


def test_unknown_model_type_is_named_and_supported_ones_listed(tmp_path):
    folder = _copy("tiny-llama", tmp_path, model_type="falcon", architectures=["FalconForCausalLM"])
    with pytest.raises(ChipfitError) as err:
        profile(str(folder), mode="infer")
    message = str(err.value)
    assert "model type 'falcon' (FalconForCausalLM)" in message
    assert ", ".join(sorted(ARCHITECTURES)) in message


def test_architecture_of_another_model_type_is_refused(tmp_path):
    folder = _copy("tiny-llama", tmp_path, architectures=["BertForMaskedLM"])
    with pytest.raises(ChipfitError, match="names architecture 'BertForMaskedLM', which is not a llama model class"):
        HFConfigModel(folder)


def test_bad_files_are_one_sentence(tmp_path):
    missing = tmp_path / "none" / "config.json"
    with pytest.raises(ChipfitError, match="does not exist"):
        HFConfigModel(missing)
    broken = tmp_path / "config.json"
    broken.write_text("{\"model_type\": ")
    with pytest.raises(ChipfitError, match="is not valid JSON"):
        HFConfigModel(broken)
    broken.write_text("[]")
    with pytest.raises(ChipfitError, match="has no \"model_type\" field"):
        HFConfigModel(broken)
    broken.write_text(" " * (2**20 + 1))
    with pytest.raises(ChipfitError, match="more than the 1048576"):
        HFConfigModel(broken)


def test_missing_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import raises ImportError
    with pytest.raises(ChipfitError) as err:
        HFConfigModel(HF / "tiny-llama")
    assert str(err.value) == "Profiling Hugging Face configs needs transformers: pip install 'chipfit[hf]'."


def test_remote_code_is_never_run(tmp_path):
    folder = _copy("tiny-llama", tmp_path, auto_map={"AutoConfig": "evil.EvilConfig"})
    shutil.copy(__file__, folder / "evil.py")
    # The model type is known, so the built-in class is used; auto_map code is not imported.
    prof = profile(str(folder), mode="infer", seq_len=4)
    assert "evil" not in sys.modules
    assert prof.params > 0
