"""Sliding-window attempt limits (login, access codes) per key, in the serving process.

A key is refused once it has ``limit`` failed attempts within ``window`` seconds; a
success does not reset the window (an attacker learns nothing by interleaving).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class AttemptLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        cutoff = self._clock() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        return any(len(self._recent(k)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        for k in keys:
            self._recent(k).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of names
            for k in [k for k, q in self._failures.items() if not q]:
                del self._failures[k]
