"""A sliding-window limiter: at most ``count`` events per ``per`` seconds."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class RateWindow:
    """Spaces events so that no window of ``per`` seconds holds more than ``count`` of them."""

    def __init__(self, count: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = count
        self.per = per
        self.clock = clock
        self._times: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to wait before the next event may happen (0 if it may happen now)."""
        now = self.clock()
        while self._times and now - self._times[0] >= self.per:
            self._times.popleft()
        if len(self._times) < self.count:
            return 0.0
        return self.per - (now - self._times[0])

    def record(self) -> None:
        self._times.append(self.clock())

    async def acquire(self) -> None:
        """Wait until an event is allowed, then count it."""
        while (wait := self.delay()) > 0:  # noqa: ASYNC110 (a deadline, not a condition to wait for)
            await asyncio.sleep(wait)
        self.record()
