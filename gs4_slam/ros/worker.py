"""The node's threads: the pipeline thread (bounded frame queue, tasks, drop accounting)
and a periodic thread for outputs that read the map.

ROS callbacks must return quickly, and the pipeline must never run twice at once,
so everything that changes the pipeline runs on one thread: frames (drained
newest-last from a queue of bounded size) and tasks (services: save, load, reset),
which go before waiting frames. A full queue drops its oldest frame, which keeps
latency low under overload and memory flat; every frame that does not reach the
pipeline is counted under a reason, so none is lost silently.

Renders and map snapshots wait for the mapping thread's lock, which a keyframe
optimisation holds for up to seconds on a CPU; on the pipeline thread they would
stall tracking for as long, so they run on :class:`PeriodicThread`. Nothing here
imports rclpy.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: Why a received frame did not reach the pipeline.
DROP_REASONS = ("queue_full", "paused", "reset", "invalid", "out_of_order", "error")


@dataclass
class WorkerCounts:
    """Frame counters: ``received == processed + sum(dropped) + queued (+ one in progress)``."""

    received: int = 0
    processed: int = 0
    queued: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())


class PipelineWorker:
    """Runs ``handle_frame(item)`` for queued items and submitted tasks on one thread.

    ``handle_frame`` returns False for an item it rejected (and counted with :meth:`drop`);
    ``on_error(exc)`` reports a frame that raised.
    """

    def __init__(self, handle_frame: Callable[[Any], bool], queue_size: int,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._handle_frame = handle_frame
        self._on_error = on_error or (lambda exc: None)
        self._frames: collections.deque = collections.deque()
        self._queue_size = queue_size
        self._tasks: collections.deque[tuple[Callable[[], Any], Future]] = collections.deque()
        self._counts = WorkerCounts()
        self._paused = False
        self._stopping = False
        self._wakeup = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="gs4_slam_pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the frame or task in progress, fail pending tasks, and end the thread."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        while self._tasks:
            self._tasks.popleft()[1].set_exception(RuntimeError("the node is shutting down"))

    # ------------------------------------------------------------------ frames

    def note_received(self) -> None:
        with self._wakeup:
            self._counts.received += 1

    def drop(self, reason: str, count: int = 1) -> None:
        """Count received frames that will not be processed."""
        with self._wakeup:
            self._counts.dropped[reason] += count

    def submit(self, item: Any) -> bool:
        """Queue a (received) frame; False when it or an older one had to be dropped."""
        with self._wakeup:
            if self._paused:
                self._counts.dropped["paused"] += 1
                return False
            self._frames.append(item)
            dropped = len(self._frames) > self._queue_size
            if dropped:
                self._frames.popleft()
                self._counts.dropped["queue_full"] += 1
            self._wakeup.notify_all()
            return not dropped

    def clear(self, reason: str) -> int:
        """Drop every queued frame (counted under ``reason``); returns how many."""
        with self._wakeup:
            n = len(self._frames)
            self._frames.clear()
            self._counts.dropped[reason] += n
            return n

    def pause(self) -> int:
        """Stop processing; queued and arriving frames are dropped (counted as paused)."""
        with self._wakeup:
            self._paused = True
        return self.clear("paused")

    def resume(self) -> None:
        with self._wakeup:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def counts(self) -> WorkerCounts:
        with self._wakeup:
            return WorkerCounts(self._counts.received, self._counts.processed, len(self._frames),
                                dict(self._counts.dropped))

    # ------------------------------------------------------------------ tasks

    def run_task(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Run ``fn`` on the pipeline thread (before queued frames) and return its result.

        Raises what ``fn`` raised, or TimeoutError when it has not finished in time.
        """
        future: Future = Future()
        with self._wakeup:
            if self._stopping:
                raise RuntimeError("the node is shutting down")
            self._tasks.append((fn, future))
            self._wakeup.notify_all()
        return future.result(timeout=timeout_s)

    # ------------------------------------------------------------------ thread

    def _next(self) -> tuple[str, Any] | None:
        with self._wakeup:
            if not (self._tasks or self._frames or self._stopping):
                self._wakeup.wait(1.0)
            if self._stopping:
                return ("stop", None)
            if self._tasks:
                return ("task", self._tasks.popleft())
            if self._frames:
                return ("frame", self._frames.popleft())
            return None

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is not None and job[0] == "stop":
                return
            if job is not None and job[0] == "task":
                fn, future = job[1]
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        future.set_exception(exc)
                continue
            if job is not None:
                self._process(job[1])

    def _process(self, item: Any) -> None:
        try:
            accepted = self._handle_frame(item)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self.drop("error")
            self._on_error(exc)
        else:
            if accepted is not False:
                with self._wakeup:
                    self._counts.processed += 1


class PeriodicThread:
    """Calls ``tick()`` every ``period_s`` on its own thread until stopped; errors go to ``on_error``."""

    def __init__(self, tick: Callable[[], None], period_s: float,
                 on_error: Callable[[BaseException], None] | None = None, name: str = "gs4_slam_outputs") -> None:
        self._tick = tick
        self._period_s = period_s
        self._on_error = on_error or (lambda exc: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - reported, the thread goes on
                self._on_error(exc)
