"""Tiny generative-recommender fixtures: a small config, splits with a learnable next item, a sid table."""

from __future__ import annotations

import numpy as np

from service.core.sid import SidLayout, SidTable
from training.config import GenRecConfig
from training.data.split import EvalCase, Split

TINY = GenRecConfig(
    history_input="tokens",  # TIGER's layout at a constant lr (the defaults are the CPU configs' model)
    item_id_input=False,
    item_id_init="random",
    lr_schedule="constant",
    warmup_steps=0,
    d_model=32,
    d_ff=64,
    n_heads=2,
    d_kv=16,
    max_items=3,
    batch_size=32,
    epochs=40,
    max_minutes=5.0,  # epoch-bound, not time-bound: a loaded machine must not change the result
    eval_every=40,  # validate once, at the end (decoding every epoch would dominate the test)
    patience=30,
    beam=10,
    lr=1e-2,
    dropout=0.0,
    val_users=0,
    eval_batch_size=64,
)


def cyclic_split(n_items: int = 40, n_users: int = 80, seed: int = 0) -> Split:
    """Users walk the catalog in steps of +1 from a random start: next item = last + 1 (mod n)."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        s = [(start + i) % n_items for i in range(int(rng.integers(4, 8)))]
        train.append(s[:-2])
        val.append(EvalCase(u, tuple(s[:-2]), s[-2]))
        test.append(EvalCase(u, tuple(s[:-1]), s[-1]))
    return Split(n_items=n_items, train=train, val=val, test=test)


def table_for(n: int) -> SidTable:
    rng = np.random.default_rng(0)
    return SidTable.from_codes(rng.integers(0, 4, (n, 2)), SidLayout(2, 4, 8))
