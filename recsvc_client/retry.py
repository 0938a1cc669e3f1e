"""Retry policy: exponential backoff on 503 / 429 / connection errors, ``Retry-After`` honoured."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

RetryHook = Callable[[int, float, str], None]


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    max_retries: retries after the first try (0 = never retry);
    backoff_base / backoff_max: the n-th retry (n = 0, 1, ...) waits ``min(backoff_max,
    backoff_base * 2**n)`` seconds, times a random factor in [0.5, 1] when ``jitter``;
    retry_after_max: a ``Retry-After`` header (seconds or an HTTP date) is waited exactly, up to
    this many seconds (a longer one gives up and raises at once);
    statuses: response statuses retried (the service sheds load with 503/429, answers 503 while
    starting); connection errors (refused, reset, timed out) are retried too, except a read
    failure of a call that is not idempotent (starting a reindex), which might have run;
    on_retry: called as ``on_retry(attempt, delay_s, reason)`` before each wait (logging, tests).
    """

    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    jitter: bool = True
    retry_after_max: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    on_retry: RetryHook | None = None

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff_base, backoff_max and retry_after_max must be >= 0")

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds before retry number ``attempt`` (0-based) without a Retry-After header."""
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        return delay * (0.5 + 0.5 * rng()) if self.jitter else delay

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None, now: float | None = None) -> float | None:
        """Seconds to wait before retry ``attempt``: the response's ``Retry-After`` when it has one
        (None: it asks for longer than ``retry_after_max``, do not retry), else the backoff."""
        value = None
        if headers is not None:
            value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        after = parse_retry_after(value, now) if value is not None else None
        if after is None:
            return self.backoff(attempt)
        return None if after > self.retry_after_max else after


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when unreadable."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
