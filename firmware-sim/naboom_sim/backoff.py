"""Exponential backoff with full jitter, so a fleet coming back online does not retry in lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of ``base * 2**n`` seconds, capped, each drawn uniformly from its upper half."""

    base: float = 0.5
    cap: float = 30.0
    _failures: int = field(default=0, init=False)

    def next(self) -> float:
        """The delay before the next try; every call doubles the ceiling up to ``cap``."""
        ceiling = min(self.cap, self.base * 2**self._failures)
        self._failures = min(self._failures + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Back to short delays after a success."""
        self._failures = 0
