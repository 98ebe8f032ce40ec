"""The names people give resolve: hub ids of the families added for them, the variant-suffix rule (never to a
different size), architectures that are not modelled, Transformer-XL positions and gpt-oss by hand, and the
profile command on an MoE, an encoder-decoder and an encoder."""

from __future__ import annotations

import json

import pytest

from chipfit.cli import main
from chipfit.errors import ChipfitError
from chipfit.predict.decode import predict_inference
from chipfit.workload.library import _base_index, base_name, resolve_model
from chipfit.workload.llm import profile_spec

from .test_llm import _gpu

GB = 1e9


@pytest.mark.parametrize("name, entry", [
    ("mistralai/Mistral-Nemo-Base-2407", "mistral-nemo-12b"),
    ("Mistral Small 24B", "mistral-small-24b"),
    ("Qwen/Qwen2-7B", "qwen2-7b"),
    ("Qwen/Qwen2-0.5B", "qwen2-0.5b"),
    ("Qwen/Qwen2-72B-Instruct", "qwen2-72b"),
    ("Qwen/Qwen2-57B-A14B", "qwen2-57b-a14b"),
    ("Qwen/QwQ-32B", "qwq-32b"),
    ("google/gemma-7b", "gemma-7b"),
    ("google/gemma-2b-it", "gemma-2b"),
    ("google/gemma-3-27b-pt", "gemma-3-27b"),
    ("google/gemma-3-4b-it", "gemma-3-4b"),
    ("microsoft/phi-2", "phi-2"),
    ("microsoft/phi-1_5", "phi-1.5"),
    ("microsoft/Phi-3-small-8k-instruct", "phi-3-small"),
    ("microsoft/Phi-3.5-MoE-instruct", "phi-3.5-moe"),
    ("deepseek-ai/deepseek-llm-67b-base", "deepseek-llm-67b"),
    ("deepseek-ai/deepseek-llm-7b-chat", "deepseek-llm-7b"),
    ("01-ai/Yi-34B", "yi-34b"),
    ("01-ai/Yi-6B", "yi-6b"),
    ("01-ai/Yi-9B", "yi-9b"),
    ("databricks/dbrx-base", "dbrx"),
    ("xai-org/grok-1", "grok-1"),
    ("nvidia/Nemotron-4-340B-Base", "nemotron-4-340b"),
    ("bigcode/starcoder2-15b", "starcoder2-15b"),
    ("bigcode/starcoder2-3b", "starcoder2-3b"),
    ("codellama/CodeLlama-34b-hf", "codellama-34b"),
    ("codellama/CodeLlama-7b-Python-hf", "codellama-7b"),
    ("moonshotai/Kimi-K2-Instruct", "kimi-k2"),
    ("openai/gpt-oss-120b", "gpt-oss-120b"),
    ("openai/gpt-oss-20b", "gpt-oss-20b"),
    ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2-1.7b"),
    ("HuggingFaceTB/SmolLM2-135M", "smollm2-135m"),
    ("facebook/opt-13b", "opt-13b"),
    ("facebook/opt-1.3b", "opt-1.3b"),
    ("facebook/opt-2.7b", "opt-2.7b"),
    ("Chinchilla 70B", "chinchilla-70b"),
    ("Gopher", "gopher-280b"),
    ("facebook/bart-large", "bart-large"),
    ("facebook/bart-base", "bart-base"),
    ("distilbert-base-uncased", "distilbert-base-uncased"),
    ("google/electra-base", "electra-base"),
    ("FacebookAI/xlm-roberta-large", "xlm-roberta-large"),
    ("tiiuae/Falcon3-7B-Base", "falcon3-7b"),
    ("tiiuae/falcon-11B", "falcon-11b"),
    ("internlm/internlm2_5-7b-chat", "internlm2.5-7b"),
    ("internlm/internlm2_5-20b", "internlm2.5-20b"),
    ("THUDM/glm-4-9b", "glm-4-9b"),
    ("CohereForAI/c4ai-command-r-v01", "command-r"),
    ("meta-llama/Llama-2-70b-chat-hf", "llama-2-70b"),
    ("google/flan-t5-xl", "flan-t5-xl"),
    ("Qwen/Qwen1.5-7B-Chat", "qwen1.5-7b"),
    ("Qwen/Qwen3-14B", "qwen3-14b"),
    ("mistralai/Mistral-Large-Instruct-2407", "mistral-large-2"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen2.5-32b"),
    ("HuggingFaceH4/zephyr-7b-beta", "mistral-7b"),
])
def test_the_hub_ids_people_name_resolve(name, entry):
    assert resolve_model(name).name == entry


@pytest.mark.parametrize("name, entry", [
    ("google/gemma-2-27b-pt", "gemma-2-27b"),          # -pt: only -it is an alias
    ("mistralai/Mistral-7B-v0.3", "mistral-7b"),        # another release of the same shapes
    ("tiiuae/Falcon3-10B-Instruct-v1.1", "falcon3-10b"),  # two variant words
    ("Llama 2 13B Chat", "llama-2-13b"),                 # free text
    ("someorg/qwen2.5-7b-instruct", "qwen2.5-7b"),       # another organisation's copy
    ("Qwen/Qwen2-57B-A14B-Chat", "qwen2-57b-a14b"),     # an active-size word is a size
    ("meta-llama/Llama-3.1-405B-Instruct-FP8", "llama-3.1-405b"),  # the weights' number format
])
def test_a_variant_suffix_resolves_to_the_entry_of_that_name(name, entry):
    assert resolve_model(name).name == entry


def test_the_variant_rule_never_drops_a_size():
    assert base_name("Qwen/Qwen2-7B-Instruct") == "qwen/qwen2-7b"
    assert base_name("mistralai/Mistral-Nemo-Instruct-2407") == "mistralai/mistral-nemo-instruct-2407"  # no size left
    assert base_name("bert-base") == "bert-base" and base_name("whisper-large-v3") == "whisper-large-v3"
    assert resolve_model("google/gemma-3-4b-pt").name == "gemma-3-4b"
    with pytest.raises(ChipfitError, match="Unknown model 'FacebookAI/roberta'"):
        resolve_model("FacebookAI/roberta")  # base and large are sizes: not guessed
    with pytest.raises(ChipfitError, match="Unknown model 'meta-llama/Llama-2-34b-chat-hf'"):
        resolve_model("meta-llama/Llama-2-34b-chat-hf")
    with pytest.raises(ChipfitError, match="Unknown model 'ViT-G/14'"):
        resolve_model("ViT-G/14")  # not a hub id: '14' is no repository of vit_h_14's alias 'vit-h/14'


def test_a_base_name_two_entries_share_stands_for_neither():
    index = {"org/x-7b-chat": "first", "x-7b": "first", "other/x-7b-instruct": "second"}
    assert _base_index(index) == {"org/x-7b": "first", "other/x-7b": "second"}


@pytest.mark.parametrize("name, kind", [
    ("state-spaces/mamba-2.8b-hf", "state-space (Mamba) layers"),
    ("ai21labs/Jamba-v0.1", "state-space (Mamba) layers"),
    ("RWKV/rwkv-4-169m-pile", "RWKV recurrent layers"),
])
def test_architectures_that_are_not_transformers_are_refused_saying_so(name, kind):
    with pytest.raises(ChipfitError) as err:
        resolve_model(name)
    assert str(err.value) == (f"Model {name!r} has {kind}, which chipfit's analytic transformer does not model; "
                              "profile its PyTorch module instead (package.module:factory).")


def test_transformer_xl_positions_by_hand():
    spec = resolve_model("chinchilla-70b").spec
    h, layers = 8192, 80
    # attention 4h^2, position projection h^2 and its u, v biases 2h, MLP 8h^2, two RMSNorms; tied embedding.
    assert spec.params() == layers * (13 * h * h + 4 * h) + 32000 * h + h
    b, s = 2, 512
    prof = profile_spec(spec, mode="infer", batch=b, seq_len=s, precision="bf16")
    attn = next(op for op in prof.ops if op.module == "layers.0.attn" and op.kind == "attention")
    assert attn.flops == 2 * b * s * s * 64 * (2 * 128 + 128)  # content and position scores, then values
    proj = next(op for op in prof.ops if op.module == "layers.0.attn" and op.kind == "matmul")
    assert proj.flops == 2 * b * s * 4 * h * h + 2 * s * h * h  # positions projected once for the batch


def test_gpt_oss_by_hand():
    spec = resolve_model("openai/gpt-oss-20b").spec
    h, f, v = 2880, 2880, 201088
    attn = (h * 4096 + 4096) + 2 * (h * 512 + 512) + (4096 * h + h)
    expert = 2 * (h * f + f) + (f * h + h)  # gate and up, down, with biases
    layer = attn + 32 * expert + h * 32 + 2 * h
    assert spec.params() == 2 * v * h + 24 * layer + h
    assert [k.window for k in spec.layer_kinds()[:4]] == [128, 0, 128, 0]


def test_qwen2_moe_shared_expert_is_eight_expert_widths():
    spec = resolve_model("qwen2-57b-a14b").spec
    h = 3584
    attn = 2 * h * h + 2 * h * 512 + h + 2 * 512  # Q, O; K, V of 4 KV heads; Q, K, V biases
    moe = attn + (64 + 8) * 3 * h * 2560 + h * 64 + 2 * h
    assert spec.params() == 2 * 151936 * h + 28 * moe + h


@pytest.mark.parametrize("name", ["openai/gpt-oss-20b", "facebook/bart-base", "distilbert-base-uncased",
                                  "chinchilla-70b"])
def test_profile_command_runs_an_moe_an_encoder_decoder_and_an_encoder(capsys, name):
    assert main(["profile", name, "--json", "--seq", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == resolve_model(name).spec.params()


def test_dbrx_weights_within_2_gb_of_its_model_card():
    # huggingface.co/databricks/dbrx-instruct model card: "The model requires ~264GB of RAM" (16-bit weights).
    est = predict_inference(resolve_model("dbrx").spec, _gpu(memory=2e12), batch=1, prompt_tokens=100,
                            generated_tokens=10)
    assert abs(est.memory_breakdown["weights"] - 264 * GB) < 2 * GB
