"""`lm` and `lm_smalldata`: a small causal transformer predicting the next character of English text.

The corpus is the documentation CPython ships in `pydoc_data.topics` (no download): the
topics joined in sorted key order, 464,970 characters on Python 3.11.7. Its content changes
with the Python version, so every task records the text's sha256 (`task.corpus`, also in its
description) and `KNOWN_CORPORA` lists the versions whose scores and references were measured.

Characters map to a fixed 97-symbol vocabulary (newline, printable ASCII, one symbol for
anything else), so the vocabulary does not depend on the corpus. The text is cut into blocks of
4,096 characters; every tenth block is validation, the rest is training (interleaving keeps the
two splits on the same topics). A training batch is `batch_size` windows at random offsets;
the metric is the mean next-character cross-entropy (nats) over the whole validation split, cut
into consecutive windows of the context length.

`lm_smalldata` trains on only the first `train_chars` of the training split for many epochs,
the regime where sign-momentum methods are reported to act as a regulariser (on this corpus
AdamW still led there: benchmarks/LION_REGIMES.md).
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from optsearch.dsl.roles import Role
from optsearch.proxy_tasks.base import Budget, Size, Task, cross_entropy, generator
from optsearch.proxy_tasks.layers import init_transformer, linear, normal, transformer, transformer_role

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))   # index len(VOCAB) is "any other character"
VOCAB_SIZE = len(VOCAB) + 1
BLOCK, VAL_EVERY = 4096, 10
# sha256 of the joined corpus for the Python versions it was measured on.
KNOWN_CORPORA = {"3.11.7": "37d06970fc926e60c16dff401e441b84752446a36b6b64516c229fdec77e992c"}


@dataclass(frozen=True)
class LMConfig:
    width: int
    layers: int
    heads: int
    context: int
    budget: Budget
    train_chars: int | None = None    # None: the whole training split
    metric_chunk: int = 128            # validation windows per chunk in `metric` (bounds memory under vmap)
    reference: float | None = None


# small, medium: AdamW lr tuned on a grid, seed 0 (small lm_smalldata: weight decay too);
# large: scaled guesses, no reference yet.
LM_CONFIGS: dict[str, LMConfig] = {
    "small": LMConfig(width=64, layers=2, heads=4, context=32, reference=2.2390,
                      budget=Budget(steps=300, batch_size=32, lr=3e-3, warmup=15, schedule="cosine",
                                    weight_decay=0.1)),
    "medium": LMConfig(width=96, layers=3, heads=4, context=64, metric_chunk=64, reference=1.3470,
                       budget=Budget(steps=1000, batch_size=32, lr=5e-3, warmup=50, schedule="cosine",
                                     weight_decay=0.1)),
    "large": LMConfig(width=128, layers=4, heads=4, context=128, metric_chunk=32,
                      budget=Budget(steps=2000, batch_size=32, lr=3e-3, warmup=100, schedule="cosine",
                                    weight_decay=0.1)),
}
LM_SMALLDATA_CONFIGS: dict[str, LMConfig] = {
    "small": LMConfig(width=64, layers=2, heads=4, context=32, train_chars=16_000, reference=2.2571,
                      budget=Budget(steps=400, batch_size=32, lr=3e-3, warmup=20, schedule="cosine",
                                    weight_decay=0.1)),
    "medium": LMConfig(width=64, layers=2, heads=4, context=64, train_chars=50_000, metric_chunk=64,
                       reference=1.7636,
                       budget=Budget(steps=600, batch_size=64, lr=5e-3, warmup=30, schedule="cosine",
                                     weight_decay=0.1)),
    "large": LMConfig(width=96, layers=3, heads=4, context=64, train_chars=100_000, metric_chunk=64,
                      budget=Budget(steps=1500, batch_size=64, lr=3e-3, warmup=75, schedule="cosine",
                                    weight_decay=0.1)),
}


def corpus_text() -> str:
    """The pydoc topics joined in sorted key order (shipped with CPython, version-dependent)."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:   # some distributions split parts of the standard library out
        raise RuntimeError("the lm tasks read their text from the standard-library module "
                           "pydoc_data.topics, which this Python lacks; install the full standard "
                           "library") from e
    return "".join(topics[key] for key in sorted(topics))


@lru_cache(maxsize=1)
def corpus() -> tuple[Tensor, Tensor, str]:
    """(training ids, validation ids, sha256 of the text), made once per process."""
    text = corpus_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.full(128, len(VOCAB), dtype=np.int64)
    table[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB))
    ids = torch.from_numpy(table[np.minimum(codes, 127)])
    block = torch.arange(len(ids)) // BLOCK
    is_val = block % VAL_EVERY == VAL_EVERY - 1
    return ids[~is_val].clone(), ids[is_val].clone(), digest


def corpus_matches_known() -> bool:
    """Whether this Python's corpus is one whose task scores were measured."""
    return corpus()[2] in KNOWN_CORPORA.values()


@lru_cache(maxsize=None)
def _validation_windows(context: int) -> Tensor:
    """The validation split cut into consecutive windows of context + 1 ids (the rest dropped)."""
    val = corpus()[1]
    count = len(val) // (context + 1)
    return val[:count * (context + 1)].reshape(count, context + 1)


class LanguageModel(Task):
    """See the module docstring; `name` is "lm" or "lm_smalldata"."""

    def __init__(self, name: str, size: Size, cfg: LMConfig) -> None:
        self.name, self.size, self.cfg = name, size, cfg
        self.budget, self.reference = cfg.budget, cfg.reference
        train, _, self.corpus = corpus()
        self.train_ids = train if cfg.train_chars is None else train[:cfg.train_chars]
        self.val_windows = _validation_windows(cfg.context)
        self.offsets = torch.arange(cfg.context + 1)
        self.mask = torch.ones(cfg.context, cfg.context, dtype=torch.bool).triu(1)
        epochs = cfg.budget.steps * cfg.budget.batch_size * cfg.context / len(self.train_ids)
        self.description = (f"char transformer d{cfg.width} x{cfg.layers} ctx {cfg.context} on "
                            f"{len(self.train_ids) / 1000:.0f}k chars of pydoc topics "
                            f"(~{epochs:.1f} epochs), "
                            f"Python {sys.version.split()[0]} corpus {self.corpus[:8]}")

    def init(self, seed: int) -> dict[str, Tensor]:
        cfg = self.cfg
        g = generator("lm-init", seed)
        params = {"embed.tokens": normal(g, VOCAB_SIZE, cfg.width, std=0.02),
                  "embed.positions": normal(g, cfg.context, cfg.width, std=0.02)}
        params |= init_transformer(g, cfg.layers, cfg.width)
        params |= {"head.weight": normal(g, cfg.width, VOCAB_SIZE, std=0.02),
                   "head.bias": torch.zeros(VOCAB_SIZE)}
        return {k: v.to(self.device) for k, v in params.items()}

    def role(self, name: str, shape: torch.Size) -> Role:
        """Token and position embeddings, the head's weight, and the blocks' 2-D weights (hidden)."""
        return transformer_role(name, shape)

    def logits(self, params: dict[str, Tensor], ids: Tensor) -> Tensor:
        """Next-character logits for ids (..., T) with T <= context."""
        t = ids.shape[-1]
        x = params["embed.tokens"][ids] + params["embed.positions"][:t]
        x = transformer(params, x, self.cfg.layers, self.cfg.heads, self.mask[:t, :t])
        return linear(params, "head", x)

    def loss(self, params: dict[str, Tensor], batch: tuple[Tensor, ...]) -> Tensor:
        inputs, targets = batch
        return cross_entropy(self.logits(params, inputs), targets)

    def batch(self, seed: int, step: int) -> tuple[Tensor, ...]:
        g = generator("lm-batch", seed, step)
        n = len(self.train_ids) - self.cfg.context
        starts = torch.randint(0, n, (self.budget.batch_size,), generator=g).to(self.device)
        windows = self.train_ids[starts[:, None] + self.offsets]
        return windows[:, :-1], windows[:, 1:]

    def metric(self, params: dict[str, Tensor]) -> Tensor:
        chunks = self.val_windows.split(self.cfg.metric_chunk)
        total = sum(cross_entropy(self.logits(params, w[:, :-1]), w[:, 1:]) * len(w) for w in chunks)
        return total / len(self.val_windows)


def make_lm(size: Size) -> LanguageModel:
    return LanguageModel("lm", size, LM_CONFIGS[size])


def make_lm_smalldata(size: Size) -> LanguageModel:
    return LanguageModel("lm_smalldata", size, LM_SMALLDATA_CONFIGS[size])
