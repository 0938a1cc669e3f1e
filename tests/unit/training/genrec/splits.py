"""Tiny generative-recommender fixtures: a small config, splits with a learnable next item, a sid table,
and a dataset folder of such a split for the ``bench-genrec`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from service.core.sid import SidLayout, SidTable
from training.config import GenRecConfig
from training.data.loader import load_dataset
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


# bench-genrec's tiny model (TINY's shape; its own batch, beam and lr) and RQ-VAE, as --config / --sid-config files
TINY_GENREC_YAML = (
    "d_model: 32\nd_ff: 64\nn_heads: 2\nd_kv: 16\nbatch_size: 32\nbeam: 10\nlr: 0.002\n"
    # the plain model (no item IDs) at a constant lr
    "item_id_input: false\nitem_id_init: random\nlr_schedule: constant\nwarmup_steps: 0\n"
)
TINY_SID_YAML = "codebook_size: 8\nhidden: [16]\nlatent_dim: 8\nepochs: 4\nbatch_size: 16\n"


def write_cyclic_dataset(root: Path, n_items: int = 30, n_users: int = 60) -> list[str]:
    """A ``bench-genrec`` workspace under ``root`` on a :func:`cyclic_split`; -> the command's common arguments.

    ``root/cyc``: items.jsonl (ids ``I000``.., title ``item I000``) and sequences.jsonl (user ``u<k>``: the k-th
    test case's history + target); ``root/vec/items``: item_ids.json and random 16-d text_vectors.npy (seed 0),
    the vectors passed with --vectors-from; ``root/gen.yaml`` / ``root/sid.yaml``: :data:`TINY_GENREC_YAML`,
    :data:`TINY_SID_YAML`. The arguments name the configs and ``work`` relative to ``root`` (chdir there)."""
    split = cyclic_split(n_items=n_items, n_users=n_users)
    data = root / "cyc"
    data.mkdir(parents=True)
    ids = [f"I{i:03d}" for i in range(split.n_items)]
    (data / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in ids))
    seqs = [[*c.history, c.target] for c in split.test]
    (data / "sequences.jsonl").write_text(
        "".join(json.dumps({"user_id": f"u{u}", "items": [ids[j] for j in s]}) + "\n" for u, s in enumerate(seqs))
    )
    vec = root / "vec" / "items"
    vec.mkdir(parents=True)
    (vec / "item_ids.json").write_text(json.dumps(load_dataset(data).item_ids))
    np.save(vec / "text_vectors.npy", np.random.default_rng(0).normal(size=(split.n_items, 16)).astype(np.float32))
    (root / "gen.yaml").write_text(TINY_GENREC_YAML)
    (root / "sid.yaml").write_text(TINY_SID_YAML)
    args = ["bench-genrec", "--data", str(data), "--config", "gen.yaml", "--sid-config", "sid.yaml"]
    return [*args, "--vectors-from", str(root / "vec"), "--work", "work", "--epochs", "2", "--val-users", "0"]


def table_for(n: int) -> SidTable:
    rng = np.random.default_rng(0)
    return SidTable.from_codes(rng.integers(0, 4, (n, 2)), SidLayout(2, 4, 8))
