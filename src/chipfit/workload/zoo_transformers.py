"""Transformer language models of the zoo, shaped as their published configs (config.json).

Each model maps token ids [batch, seq] to logits [batch, seq, vocab]. Attention is
`scaled_dot_product_attention` (causal for decoders); grouped-query attention repeats the
K/V heads as Hugging Face's `repeat_kv` does. Random init; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[batch, seq, heads*dim] -> [batch, heads, seq, dim]."""
    batch, seq, _ = x.shape
    return x.view(batch, seq, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[batch, heads, seq, dim] -> [batch, seq, heads*dim]."""
    batch, heads, seq, dim = x.shape
    return x.transpose(1, 2).reshape(batch, seq, heads * dim)


# --- BERT-base (Devlin et al. 2019; Hugging Face BertModel, post-norm, GELU, dropout 0.1) -----
class _BertLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=1e-12)
        self.intermediate = nn.Linear(dim, ffn_dim)
        self.output = nn.Linear(ffn_dim, dim)
        self.out_norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(proj(x), self.heads) for proj in (self.query, self.key, self.value))
        p = self.dropout if self.training else 0.0
        attn = _merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=p))
        x = self.attn_norm(x + F.dropout(self.attn_out(attn), p, self.training))
        ffn = self.output(F.gelu(self.intermediate(x)))
        return self.out_norm(x + F.dropout(ffn, p, self.training))


class BertMaskedLM(nn.Module):
    """BertModel (with its pooler) trained as a masked LM whose decoder is the tied word embedding.

    The pooler's parameters are kept so the count equals BertModel's; the masked-LM
    objective does not use it, so its weights get no gradient.
    """

    def __init__(self, vocab: int = 30522, dim: int = 768, layers: int = 12, heads: int = 12,
                 ffn_dim: int = 3072, max_positions: int = 512, token_types: int = 2, dropout: float = 0.1):
        super().__init__()
        self.dropout = dropout
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.token_type_embeddings = nn.Embedding(token_types, dim)
        self.embed_norm = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.Sequential(*(_BertLayer(dim, heads, ffn_dim, dropout) for _ in range(layers)))
        self.pooler = nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings(torch.zeros_like(ids))
        x = F.dropout(self.embed_norm(x), self.dropout, self.training)
        return F.linear(self.layers(x), self.word_embeddings.weight)


# --- GPT-2 small (Radford et al. 2019; Hugging Face GPT2LMHeadModel, pre-norm, tied head) ------
class _GPT2Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.attn_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp_proj = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        q, k, v = (_split_heads(t, self.heads) for t in self.c_attn(self.ln_1(x)).chunk(3, dim=-1))
        attn = _merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True))
        x = x + F.dropout(self.attn_proj(attn), p, self.training)
        mlp = self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x + F.dropout(mlp, p, self.training)


class GPT2LM(nn.Module):
    def __init__(self, vocab: int = 50257, dim: int = 768, layers: int = 12, heads: int = 12,
                 max_positions: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.dropout = dropout
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(max_positions, dim)
        self.blocks = nn.Sequential(*(_GPT2Block(dim, heads, dropout) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = F.dropout(self.wte(ids) + self.wpe(positions), self.dropout, self.training)
        return F.linear(self.ln_f(self.blocks(x)), self.wte.weight)


# --- Llama family: Llama 2/3, Mistral, Mixtral (RMSNorm, rotary, SwiGLU, GQA, untied head) ----
@dataclass(frozen=True)
class LlamaConfig:
    """The config.json fields that shape the network (names shortened)."""

    vocab: int
    dim: int  # hidden_size
    ffn_dim: int  # intermediate_size
    layers: int
    heads: int
    kv_heads: int
    rope_theta: float
    norm_eps: float = 1e-5
    experts: int = 0  # num_local_experts; 0 for a dense MLP
    top_k: int = 0  # num_experts_per_tok


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def _rotary(seq: int, head_dim: int, theta: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [seq, head_dim] of the rotary embedding at positions 0..seq-1 (Su et al. 2021)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=like.device) / head_dim)
    angles = torch.outer(torch.arange(seq, dtype=torch.float32, device=like.device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(like.dtype), angles.sin().to(like.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class _Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        head_dim = cfg.dim // cfg.heads
        self.q_proj = nn.Linear(cfg.dim, cfg.heads * head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * head_dim, cfg.dim, bias=False)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, kv_heads, seq, dim] -> [batch, heads, seq, dim], each K/V head shared by a group."""
        batch, kv_heads, seq, dim = x.shape
        groups = self.cfg.heads // kv_heads
        return x[:, :, None].expand(batch, kv_heads, groups, seq, dim).reshape(batch, kv_heads * groups, seq, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q_proj(x), self.cfg.heads)
        k = _split_heads(self.k_proj(x), self.cfg.kv_heads)
        v = _split_heads(self.v_proj(x), self.cfg.kv_heads)
        cos, sin = _rotary(x.shape[1], q.shape[-1], self.cfg.rope_theta, x)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, self._repeat_kv(k), self._repeat_kv(v), is_causal=True)
        return self.o_proj(_merge_heads(attn))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, ffn_dim, bias=False)
        self.up_proj = nn.Linear(dim, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class BalancedMoE(nn.Module):
    """Sparse mixture of SwiGLU experts, top-k routed, under the balanced-routing assumption.

    The router logits, softmax and top-k are computed as in Mixtral (so they are traced),
    and the top-k weights are renormalised. Which expert a token reaches depends on the
    data, which fake tensors do not have; so the tokens*top_k (token, slot) pairs are cut
    into `experts` equal blocks and block e goes to expert e. Each expert then sees
    tokens*top_k/experts rows and every token costs top_k experts, as in a balanced run.
    """

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.top_k = cfg.top_k
        self.gate = nn.Linear(cfg.dim, cfg.experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(cfg.dim, cfg.ffn_dim) for _ in range(cfg.experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        probs = F.softmax(self.gate(tokens), dim=-1, dtype=torch.float32)
        weights, _ = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        slots = tokens.repeat_interleave(self.top_k, dim=0)  # row i*top_k+j: token i, its j-th choice
        blocks = torch.tensor_split(slots, len(self.experts))
        out = torch.cat([expert(block) for expert, block in zip(self.experts, blocks)])
        out = (out * weights.reshape(-1, 1)).view(tokens.shape[0], self.top_k, -1).sum(1)
        return out.view_as(x)


class _DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = _Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = BalancedMoE(cfg) if cfg.experts else SwiGLU(cfg.dim, cfg.ffn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaLM(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.dim)
        self.layers = nn.Sequential(*(_DecoderLayer(cfg) for _ in range(cfg.layers)))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(self.layers(self.embed_tokens(ids))))
