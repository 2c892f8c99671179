"""Functional model pieces shared by the tasks: pre-norm transformer blocks over parameter dicts.

Every function takes the parameter dict and works on any leading batch dims, so the same code
runs on one copy or, under `torch.func.vmap`, on many. Attention is written out
(q @ k^T, mask, softmax, @ v): `F.scaled_dot_product_attention` has no CPU batching rule and
would fall back to a slow per-copy loop under vmap. Weights are stored (in, out): y = x @ W + b.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from optsearch.dsl.roles import Role


def normal(g: torch.Generator, *shape: int, std: float) -> Tensor:
    return torch.randn(*shape, generator=g) * std


def init_transformer(g: torch.Generator, layers: int, width: int, mlp_ratio: int = 4,
                     std: float = 0.02) -> dict[str, Tensor]:
    """Parameters of `layers` pre-norm blocks and a final norm (GPT-2 initialisation)."""
    proj_std = std / math.sqrt(2 * layers)   # residual projections, so the stream's variance stays put
    hidden = mlp_ratio * width
    params: dict[str, Tensor] = {}
    for i in range(layers):
        p = f"blocks.{i}."
        params |= {
            p + "norm1.weight": torch.ones(width), p + "norm1.bias": torch.zeros(width),
            p + "attn.qkv.weight": normal(g, width, 3 * width, std=std),
            p + "attn.qkv.bias": torch.zeros(3 * width),
            p + "attn.proj.weight": normal(g, width, width, std=proj_std),
            p + "attn.proj.bias": torch.zeros(width),
            p + "norm2.weight": torch.ones(width), p + "norm2.bias": torch.zeros(width),
            p + "mlp.fc.weight": normal(g, width, hidden, std=std),
            p + "mlp.fc.bias": torch.zeros(hidden),
            p + "mlp.proj.weight": normal(g, hidden, width, std=proj_std),
            p + "mlp.proj.bias": torch.zeros(width),
        }
    params |= {"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width)}
    return params


def transformer_role(name: str, shape: torch.Size) -> Role:
    """A transformer's parameter roles: `embed.*` (tokens, patches, positions) embedding,
    `head.weight` head, other 2-D weights (the blocks') hidden, anything below 2-D a vector."""
    if len(shape) < 2:
        return "vector"
    if name.startswith("embed."):
        return "embedding"
    return "head" if name.startswith("head.") else "hidden"


def linear(params: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return x @ params[name + ".weight"] + params[name + ".bias"]


def layer_norm(params: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], params[name + ".weight"], params[name + ".bias"])


def attention(params: dict[str, Tensor], name: str, x: Tensor, heads: int,
              mask: Tensor | None) -> Tensor:
    """Multi-head self-attention over x (..., T, D); `mask` (T, T) is True where attention is cut."""
    *lead, t, d = x.shape
    qkv = linear(params, name + ".qkv", x).reshape(*lead, t, 3, heads, d // heads)
    q, k, v = (qkv.select(-3, i).transpose(-3, -2) for i in range(3))     # (..., H, T, Dh)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // heads))
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v                                   # (..., H, T, Dh)
    y = y.transpose(-3, -2).reshape(*lead, t, d)
    return linear(params, name + ".proj", y)


def transformer(params: dict[str, Tensor], x: Tensor, layers: int, heads: int,
                mask: Tensor | None = None) -> Tensor:
    """The blocks and the final norm applied to the token stream x (..., T, D)."""
    for i in range(layers):
        p = f"blocks.{i}."
        x = x + attention(params, p + "attn", layer_norm(params, p + "norm1", x), heads, mask)
        h = F.gelu(linear(params, p + "mlp.fc", layer_norm(params, p + "norm2", x)))
        x = x + linear(params, p + "mlp.proj", h)
    return layer_norm(params, "norm", x)
