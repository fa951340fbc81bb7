"""Approximate-time synchronisation of several message streams.

ROS 2 distributions ship ``message_filters.ApproximateTimeSynchronizer``; the PyPI
wheels this project can also run on do not, so :class:`ApproximateTimeSynchronizer`
is an equivalent used only when ``message_filters`` cannot be imported (see
:func:`create_synchronized_subscriptions`).

Differences that matter for SLAM, and why:
  * sets are emitted in increasing stamp order of the first input (the reference,
    the colour image): a tracker cannot use a frame older than the last one, so a
    set that could only be completed out of order is dropped and counted;
  * messages that can never be part of a future set are purged at once and counted,
    so no message is lost silently and memory stays bounded by ``queue_size``.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Reasons a message leaves a queue without being emitted; "lost" ones never arrived
#: (a gap in the publisher's sequence numbers: the transport or a full reader history).
DROP_REASONS = ("queue_full", "stale", "duplicate_stamp", "lost")


def stamp_ns(msg: Any) -> int:
    """A message's ``header.stamp`` in integer nanoseconds (exact, hashable)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class SyncStats:
    """Counters of one synchroniser; ``dropped[reason][input]``."""

    num_inputs: int
    emitted: int = 0
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dropped = {reason: [0] * self.num_inputs for reason in DROP_REASONS}

    def total_dropped(self, index: int | None = None) -> int:
        """Dropped messages of input ``index`` (all inputs when None)."""
        return sum(sum(counts) if index is None else counts[index] for counts in self.dropped.values())


class ApproximateTimeSynchronizer:
    """Groups one message per input whose stamps lie within ``slop_s`` of each other.

    Each input keeps at most ``queue_size`` messages keyed by stamp, so arrival
    order within an input does not matter. When a message arrives, the set that
    contains it with the smallest stamp spread (at most ``slop_s``) is emitted to
    the callbacks as ``callback(msg_0, ..., msg_{n-1})``. Every message dropped
    unmatched is counted in ``stats`` and reported as ``on_drop(reason, input, stamp_ns)``.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop_s: float,
                 callback: Callable[..., None] | None = None,
                 on_drop: Callable[[str, int, int], None] | None = None) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s >= 0.0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        self.queue_size = queue_size
        self.slop_ns = round(slop_s * 1e9)
        self.stats = SyncStats(num_inputs)
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._callbacks: list[Callable[..., None]] = [callback] if callback else []
        self._last_reference_ns: int | None = None
        self._lock = threading.Lock()
        self._on_drop = on_drop
        self._drops: list[tuple[str, int, int]] = []  # (reason, input, stamp_ns) not yet reported
        self._sequences: dict[tuple[int, object], int] = {}  # (input, publisher) -> last sequence number

    def register_callback(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def note_sequence(self, index: int, stamp: int, publisher: object, sequence: int | None) -> None:
        """Count messages of input ``index`` that never arrived, from publication sequence numbers."""
        if sequence is None:
            return
        with self._lock:
            last = self._sequences.get((index, publisher))
            self._sequences[(index, publisher)] = sequence
            if last is not None and sequence > last + 1:
                self.stats.dropped["lost"][index] += sequence - last - 1
                self._drops.append(("lost", index, stamp))

    def queued(self, index: int) -> int:
        """Messages of input ``index`` waiting for partners."""
        return len(self._queues[index])

    def add(self, msg: Any, index: int) -> tuple | None:
        """Offer ``msg`` of input ``index``; returns the emitted set, if any."""
        stamp = stamp_ns(msg)
        with self._lock:
            matched = self._add_locked(msg, index, stamp)
            drops, self._drops = self._drops, []
        if self._on_drop is not None:
            for drop in drops:
                self._on_drop(*drop)
        if matched is not None:
            for callback in self._callbacks:
                callback(*matched)
        return matched

    def _add_locked(self, msg: Any, index: int, stamp: int) -> tuple | None:
        if self._is_stale(index, stamp):
            self._count_drop("stale", index, stamp)
            return None
        queue = self._queues[index]
        if stamp in queue:
            self._count_drop("duplicate_stamp", index, stamp)
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            oldest = min(queue)
            del queue[oldest]
            self._count_drop("queue_full", index, oldest)
        stamps = self._best_set(index, stamp)
        if stamps is None:
            return None
        matched = tuple(q.pop(s) for q, s in zip(self._queues, stamps))
        self.stats.emitted += 1
        self._last_reference_ns = stamps[0]
        self._purge_stale()
        return matched

    def _is_stale(self, index: int, stamp: int) -> bool:
        """Whether a message could only join a set older than the last emitted one."""
        last = self._last_reference_ns
        if last is None:
            return False
        return stamp <= last if index == 0 else stamp < last - self.slop_ns

    def _purge_stale(self) -> None:
        for index, queue in enumerate(self._queues):
            for stamp in [s for s in queue if self._is_stale(index, s)]:
                del queue[stamp]
                self._count_drop("stale", index, stamp)

    def _count_drop(self, reason: str, index: int, stamp: int) -> None:
        self.stats.dropped[reason][index] += 1
        self._drops.append((reason, index, stamp))

    def _best_set(self, index: int, stamp: int) -> tuple[int, ...] | None:
        """Stamps (one per input) of the tightest set containing ``stamp`` at ``index``."""
        candidates: list[Sequence[int]] = []
        for other, queue in enumerate(self._queues):
            if other == index:
                candidates.append((stamp,))
                continue
            near = [s for s in queue if abs(s - stamp) <= self.slop_ns]
            if not near:
                return None
            candidates.append(near)
        best: tuple[int, ...] | None = None
        best_key: tuple[int, int] | None = None
        for combo in itertools.product(*candidates):
            spread = max(combo) - min(combo)
            if spread > self.slop_ns:
                continue
            key = (spread, combo[0])
            if best_key is None or key < best_key:
                best, best_key = combo, key
        return best


@dataclass
class SynchronizedInputs:
    """What :func:`create_synchronized_subscriptions` made; ``stats`` is None for message_filters."""

    backend: str
    handles: list[Any]
    stats: SyncStats | None


def create_synchronized_subscriptions(
    node: Any,
    topics: Sequence[tuple[type, str]],
    qos: Any,
    queue_size: int,
    slop_s: float,
    callback: Callable[..., None],
    callback_group: Any = None,
    on_drop: Callable[[str, int, int], None] | None = None,
) -> SynchronizedInputs:
    """Subscribe to ``topics`` ((type, name) pairs) and call ``callback`` with matched sets.

    Uses ``message_filters`` where a ROS distribution provides it, else this module's
    synchroniser fed by plain subscriptions (which also reports drops to ``on_drop``).
    """
    try:
        import message_filters
    except ImportError:
        message_filters = None
    if message_filters is not None:
        subscribers = [
            message_filters.Subscriber(node, msg_type, name, qos_profile=qos, callback_group=callback_group)
            for msg_type, name in topics
        ]
        synchronizer = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop_s)
        synchronizer.registerCallback(callback)
        return SynchronizedInputs("message_filters", [*subscribers, synchronizer], None)
    synchronizer = ApproximateTimeSynchronizer(len(topics), queue_size, slop_s, callback, on_drop)

    def receiver(index: int):
        def receive(msg: Any, info: dict) -> None:
            publisher = bytes((info.get("publisher_gid") or {}).get("data", b""))
            synchronizer.note_sequence(index, stamp_ns(msg), publisher, info.get("publication_sequence_number"))
            synchronizer.add(msg, index)

        return receive

    handles = [
        node.create_subscription(msg_type, name, receiver(i), qos, callback_group=callback_group)
        for i, (msg_type, name) in enumerate(topics)
    ]
    return SynchronizedInputs("gs4_slam", [*handles, synchronizer], synchronizer.stats)
