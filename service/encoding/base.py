"""The encoder protocol every part of the service codes against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class EncoderError(RuntimeError):
    """The encoder could not be loaded, or disagrees with its golden vectors."""


@runtime_checkable
class Encoder(Protocol):
    dim: int
    name: str
    max_length: int

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """[N] texts -> [N, dim] float32 rows of unit length."""
        ...
