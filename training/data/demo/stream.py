"""The demo's one source of randomness: seeded uniforms, and the integers and choices derived from them."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import accumulate
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def _uniforms(rng: np.random.Generator, block: int) -> Iterator[float]:
    while True:
        yield from rng.random(block).tolist()


class Stream:
    """Seeded uniforms drawn from numpy in blocks, consumed as Python floats.

    Only ``Generator.random`` is used, and everything else (integers, choices)
    is derived here, so the output does not depend on numpy's implementation of
    other samplers.
    """

    def __init__(self, seed: int, block: int = 1 << 16) -> None:
        self.random: Callable[[], float] = partial(next, _uniforms(np.random.default_rng(seed), block))

    def below(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def weighted(self, cum: Sequence[float]) -> int:
        """Index drawn in proportion to weights given as their running sum ``cum``."""
        return min(bisect_right(cum, self.random() * cum[-1]), len(cum) - 1)

    def sample_weighted(self, weights: Sequence[float], k: int) -> list[int]:
        """k distinct indices, drawn one after another in proportion to ``weights``."""
        w = list(weights)
        out: list[int] = []
        for _ in range(min(k, sum(1 for x in w if x > 0))):
            j = self.weighted(list(accumulate(w)))
            out.append(j)
            w[j] = 0.0
        return out
