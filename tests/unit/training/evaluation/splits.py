"""Small random leave-one-out splits for the evaluation tests."""

from __future__ import annotations

import numpy as np

from training.data.split import EvalCase, Split


def random_split(n_items: int = 50, n_users: int = 80, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(0, n_items, size=int(rng.integers(3, 9)))) for _ in range(n_users)]
    seqs = [[int(i) for i in s] for s in seqs]
    return Split(
        n_items=n_items,
        train=[s[:-2] for s in seqs],
        val=[EvalCase(u, tuple(s[:-2]), s[-2]) for u, s in enumerate(seqs)],
        test=[EvalCase(u, tuple(s[:-1]), s[-1]) for u, s in enumerate(seqs)],
    )
