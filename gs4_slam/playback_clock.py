"""When a recorded frame is due on the wall clock: shared by the ROS dataset player and
``gs4-slam run --realtime`` (no ROS here)."""
from __future__ import annotations

import time
from collections.abc import Callable


class PlaybackClock:
    """Maps sequence time to wall time at a real-time factor, with pause and resume.

    The first frame asked about is due at once and anchors the schedule. A frame
    that goes out more than ``max_lag_s`` late (slow disk, busy CPU, a long pause
    of the process) re-anchors it, so that the player never bursts to catch up:
    frames keep their spacing and playback simply runs later.
    """

    def __init__(self, rate: float, max_lag_s: float = 0.25, now: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.max_lag_s = max_lag_s
        self._now = now
        self._anchor: tuple[float, float] | None = None  # (wall time, sequence time)
        self._paused_at: float | None = None

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._now()

    def resume(self) -> None:
        if self._paused_at is None:
            return
        if self._anchor is not None:
            wall, data = self._anchor
            self._anchor = (wall + self._now() - self._paused_at, data)
        self._paused_at = None

    def wait_s(self, t_s: float) -> float:
        """Seconds until the frame at sequence time ``t_s`` is due (<= 0: due); inf while paused."""
        if self.paused:
            return float("inf")
        if self._anchor is None:
            return 0.0
        wall, data = self._anchor
        return wall + (t_s - data) / self.rate - self._now()

    def due(self, t_s: float) -> bool:
        """Whether to publish the frame at ``t_s`` now; a true answer counts as publishing it."""
        wait = self.wait_s(t_s)
        if wait > 0:
            return False
        if self._anchor is None or -wait > self.max_lag_s:
            self._anchor = (self._now(), t_s)
        return True
