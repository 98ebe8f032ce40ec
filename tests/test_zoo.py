import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from chipfit.errors import ChipfitError
from chipfit.workload import zoo
from chipfit.workload import zoo_transformers as tx
from chipfit.workload import zoo_vision_more as vision_more

# Published parameter counts (torchvision docs, Hugging Face model pages), written out by hand.
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "vit_b_16": 86_567_656,
    "efficientnet_b0": 5_288_548,  # torchvision's num_params
    "convnext_tiny": 28_589_128,  # torchvision's num_params
    "ddpm-unet": 35_746_307,  # Ho et al. 2020 give 35.7M
    "stable-diffusion-v1-5": 859_520_964,  # the UNet's (diffusers' num_parameters docstring); text encoder frozen
    "stable-diffusion-2-base": 865_910_724,
    "stable-diffusion-xl-base-1.0": 2_567_463_684,
    "bert-base-uncased": 109_482_240,
    "gpt2": 124_439_808,
    "llama-2-7b": 6_738_415_616,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
}
# Output of a forward on batch 1 (sequence 16 for language models).
OUTPUT_SHAPE = {
    "resnet18": (1, 1000), "resnet50": (1, 1000), "mobilenet_v2": (1, 1000), "mobilenet_v3_large": (1, 1000), "vit_b_16": (1, 1000),
    "bert-base-uncased": (1, 16, 30522), "gpt2": (1, 16, 50257), "llama-2-7b": (1, 16, 32000),
    "llama-3-8b": (1, 16, 128256), "llama-3-70b": (1, 16, 128256), "mistral-7b": (1, 16, 32000),
    "mixtral-8x7b": (1, 16, 32000), "efficientnet_b0": (1, 1000), "convnext_tiny": (1, 1000), "ddpm-unet": (1, 3, 32, 32),
    "stable-diffusion-v1-5": (1, 4, 64, 64), "stable-diffusion-2-base": (1, 4, 64, 64),
    "stable-diffusion-xl-base-1.0": (1, 4, 128, 128),
}


def test_zoo_holds_exactly_the_listed_models():
    # The further torchvision models are checked in test_zoo_vision_more.py.
    assert sorted(zoo.ZOO) == sorted([*PUBLISHED, *vision_more.BUILDERS])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_fake_build_has_published_params_and_forward_shape(name):
    entry = zoo.get(name)
    seq = None if entry.default_seq_len is None else 16
    with FakeTensorMode():
        model = entry.build()
        # Unique trainable parameters: tied weights once, a text-to-image model's frozen text encoders apart.
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        inputs, targets = entry.make_batch(1, seq)
        output = model(*inputs)
        loss = entry.loss(output, targets)
    assert params == PUBLISHED[name]
    assert abs(entry.published_params / params - 1) <= 0.01
    assert tuple(output.shape) == OUTPUT_SHAPE[name]
    assert loss.shape == ()


def test_default_sequence_lengths():
    expected = {"bert-base-uncased": 512, "gpt2": 1024, "llama-2-7b": 4096, "llama-3-8b": 8192,
                "llama-3-70b": 8192, "mistral-7b": 8192, "mixtral-8x7b": 32768}
    assert {n: e.default_seq_len for n, e in zoo.ZOO.items() if e.default_seq_len} == expected
    assert all(zoo.ZOO[n].default_seq_len is None for n in ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large",
                                                                "vit_b_16", "efficientnet_b0", "convnext_tiny",
                                                                "ddpm-unet"))


def test_make_batch_shapes_and_dtypes():
    (images,), labels = zoo.get("resnet50").make_batch(2, None)
    assert images.shape == (2, 3, 224, 224) and images.dtype == torch.float32
    assert labels.shape == (2,) and labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 1000
    with FakeTensorMode():
        (ids,), targets = zoo.get("llama-3-8b").make_batch(3, None)
    assert ids.shape == targets.shape == (3, 8192) and ids.dtype == torch.int64


def test_make_batch_rejects_bad_shapes():
    with pytest.raises(ChipfitError, match="exceeds the 512 positions model 'bert-base-uncased' has"):
        zoo.get("bert-base-uncased").make_batch(1, 513)
    with pytest.raises(ChipfitError, match="takes images, not sequences"):
        zoo.get("vit_b_16").make_batch(1, 16)
    with pytest.raises(ChipfitError, match="Batch 0"):
        zoo.get("gpt2").make_batch(0, 16)


def test_loss_of_uniform_logits_is_log_of_class_count():
    assert zoo.get("resnet18").loss(torch.zeros(2, 1000), torch.tensor([3, 7])).item() == pytest.approx(math.log(1000))
    targets = torch.tensor([[1, 50256]])
    assert zoo.get("gpt2").loss(torch.zeros(1, 2, 50257), targets).item() == pytest.approx(math.log(50257))


def test_get_is_case_insensitive_and_suggests_on_typo():
    assert zoo.get("ResNet50") is zoo.ZOO["resnet50"]
    with pytest.raises(ChipfitError) as err:
        zoo.get("lama-3-8b")
    assert str(err.value) == (
        "Unknown model 'lama-3-8b'. Did you mean llama-3-8b, llama-3-70b, llama-2-7b? `chipfit models` lists the "
        "known names; or give a module as 'package.module:factory'."
    )


def test_moe_costs_top_k_experts_per_token():
    # 6 tokens, dim 8, ffn 16, 4 experts, top-2: router 6*8*4 MACs; 12 (token, slot) rows through
    # 3 expert matmuls of 8*16 MACs each.
    cfg = tx.LlamaConfig(vocab=10, dim=8, ffn_dim=16, layers=1, heads=2, kv_heads=1, rope_theta=1e4, experts=4, top_k=2)
    moe = tx.BalancedMoE(cfg)
    with FlopCounterMode(display=False) as counter:
        moe(torch.randn(2, 3, 8))
    assert counter.get_total_flops() == 2 * (6 * 8 * 4 + 12 * 3 * 8 * 16)


def test_moe_weights_each_token_by_its_own_routing_weights():
    # With identical experts, renormalised top-k weights sum to 1 per token, so the mixture
    # equals one expert; a slot weighted with another token's weight would break this.
    cfg = tx.LlamaConfig(vocab=10, dim=8, ffn_dim=16, layers=1, heads=2, kv_heads=1, rope_theta=1e4, experts=4, top_k=2)
    moe = tx.BalancedMoE(cfg)
    for expert in moe.experts[1:]:
        expert.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x), moe.experts[0](x))


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = tx._rotary(8, 4, 1e4, torch.zeros(()))
    q, k = torch.randn(4), torch.randn(4)
    score = lambda m, n: (tx._rotate(q, cos[m], sin[m]) @ tx._rotate(k, cos[n], sin[n])).item()  # noqa: E731
    assert score(5, 3) == pytest.approx(score(2, 0), abs=1e-5)
    assert score(0, 0) == pytest.approx((q @ k).item(), abs=1e-6)  # position 0 is unrotated


def test_grouped_query_attention_shares_kv_heads_in_order():
    cfg = tx.LlamaConfig(vocab=10, dim=8, ffn_dim=16, layers=1, heads=4, kv_heads=2, rope_theta=1e4)
    kv = torch.arange(2.0).view(1, 2, 1, 1)
    assert tx._Attention(cfg)._repeat_kv(kv).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("model", [
    tx.GPT2LM(vocab=11, dim=8, layers=2, heads=2, max_positions=6),
    tx.LlamaLM(tx.LlamaConfig(vocab=11, dim=8, ffn_dim=12, layers=2, heads=4, kv_heads=2, rope_theta=1e4)),
    tx.LlamaLM(tx.LlamaConfig(vocab=11, dim=8, ffn_dim=12, layers=1, heads=2, kv_heads=1, rope_theta=1e4,
                              experts=2, top_k=1)),
], ids=["gpt2", "llama", "moe"])
def test_decoders_are_causal(model):
    model.eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    changed = ids.clone()
    changed[0, -1] = 9
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :-1], model(changed)[:, :-1])
        assert not torch.allclose(model(ids)[:, -1], model(changed)[:, -1])


def test_bert_sees_the_whole_sequence_and_ties_its_decoder():
    model = tx.BertMaskedLM(vocab=11, dim=8, layers=1, heads=2, ffn_dim=16, max_positions=6).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    changed = torch.tensor([[1, 2, 3, 9]])
    with torch.no_grad():
        assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0])  # bidirectional
    model.word_embeddings.weight.data.zero_()
    with torch.no_grad():
        assert model(ids).abs().max().item() == 0.0  # logits come from the word embedding
