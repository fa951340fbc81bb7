"""The package's approximate-time synchroniser on its own: slop, queue size, out-of-order stamps."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from gs4_slam.ros.sync import ApproximateTimeSynchronizer, create_synchronized_subscriptions, stamp_ns

pytestmark = pytest.mark.ros


def msg(name: str, t_s: float) -> SimpleNamespace:
    sec, nanosec = divmod(round(t_s * 1e9), 1_000_000_000)
    return SimpleNamespace(name=name, header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))


def names(matched) -> list[str]:
    return [m.name for m in matched]


def test_stamp_is_exact_integer_nanoseconds():
    assert stamp_ns(msg("a", 1.5)) == 1_500_000_000
    big = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=1_700_000_000, nanosec=1)))
    assert stamp_ns(big) == 1_700_000_000_000_000_001


def test_exact_stamps_pair_up_in_any_arrival_interleaving():
    received = []
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.01, callback=lambda *m: received.append(names(m)))
    sync.add(msg("c1", 1.0), 0)
    sync.add(msg("c2", 2.0), 0)
    sync.add(msg("d1", 1.0), 1)
    sync.add(msg("d2", 2.0), 1)
    assert received == [["c1", "d1"], ["c2", "d2"]]
    assert sync.stats.emitted == 2 and sync.stats.total_dropped() == 0
    assert sync.queued(0) == sync.queued(1) == 0


def test_slop_decides_what_matches():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.02)
    sync.add(msg("c", 1.000), 0)
    assert sync.add(msg("d_far", 1.030), 1) is None  # 30 ms apart > 20 ms slop
    assert names(sync.add(msg("c_near", 1.045), 0)) == ["c_near", "d_far"]  # 15 ms apart


def test_the_tightest_set_is_emitted():
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop_s=0.05)
    sync.add(msg("c_a", 1.00), 0)
    sync.add(msg("c_b", 1.03), 0)
    sync.add(msg("l", 1.03), 2)
    matched = sync.add(msg("d", 1.02), 1)
    assert names(matched) == ["c_b", "d", "l"]
    # c_a is older than the emitted set: it can never be emitted in order, so it is counted.
    assert sync.stats.dropped["stale"] == [1, 0, 0]


def test_queue_size_bounds_memory_and_counts_evictions():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop_s=0.001)
    for i in range(10):
        sync.add(msg(f"c{i}", float(i)), 0)
    assert sync.queued(0) == 3
    assert sync.stats.dropped["queue_full"] == [7, 0]
    assert sync.add(msg("d0", 0.0), 1) is None  # its partner was evicted
    assert names(sync.add(msg("d9", 9.0), 1)) == ["c9", "d9"]
    # Everything that left a queue unmatched is accounted for.
    assert sync.stats.emitted * 2 + sync.stats.total_dropped() + sync.queued(0) + sync.queued(1) == 12


def test_out_of_order_stamps_within_a_topic_still_match():
    received = []
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.005, callback=lambda *m: received.append(names(m)))
    for name, t in [("c3", 3.0), ("c1", 1.0), ("c2", 2.0)]:
        sync.add(msg(name, t), 0)
    for name, t in [("d1", 1.0), ("d2", 2.0), ("d3", 3.0)]:
        sync.add(msg(name, t), 1)
    assert received == [["c1", "d1"], ["c2", "d2"], ["c3", "d3"]]


def test_sets_are_emitted_in_stamp_order_and_late_ones_are_counted():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.005)
    sync.add(msg("c1", 1.0), 0)
    sync.add(msg("c2", 2.0), 0)
    assert names(sync.add(msg("d2", 2.0), 1)) == ["c2", "d2"]
    assert sync.stats.dropped["stale"] == [1, 0]  # c1 can no longer be emitted in order
    assert sync.add(msg("d1", 1.0), 1) is None
    assert sync.add(msg("c_old", 1.5), 0) is None
    assert sync.stats.dropped["stale"] == [2, 1]
    assert names(sync.add(msg("d3", 3.0), 1) or ()) == []
    assert names(sync.add(msg("c3", 3.001), 0)) == ["c3", "d3"]


def test_every_drop_is_reported_with_its_reason():
    drops = []
    sync = ApproximateTimeSynchronizer(2, queue_size=2, slop_s=0.0, on_drop=lambda *d: drops.append(d))
    for t in (1.0, 2.0, 3.0):
        sync.add(msg("c", t), 0)
    sync.add(msg("d", 3.0), 1)
    sync.add(msg("late", 2.5), 1)
    assert drops == [("queue_full", 0, 1_000_000_000), ("stale", 0, 2_000_000_000), ("stale", 1, 2_500_000_000)]


def test_sequence_gaps_count_messages_lost_before_arrival():
    drops = []
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.0, on_drop=lambda *d: drops.append(d))
    for seq in (1, 2, 5):
        sync.note_sequence(0, seq, b"camera", seq)
    sync.note_sequence(0, 9, b"other_camera", 9)  # sequence numbers are per publisher
    sync.note_sequence(1, 1, b"camera", None)  # a middleware without sequence numbers
    assert sync.stats.dropped["lost"] == [2, 0] and sync.stats.total_dropped(0) == 2
    sync.add(msg("c", 1.0), 0)
    assert drops == [("lost", 0, 5)]


def test_duplicate_stamp_replaces_and_is_counted():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.0)
    sync.add(msg("c_first", 1.0), 0)
    sync.add(msg("c_second", 1.0), 0)
    assert names(sync.add(msg("d", 1.0), 1)) == ["c_second", "d"]
    assert sync.stats.dropped["duplicate_stamp"] == [1, 0]


def test_single_input_passes_through_in_order():
    sync = ApproximateTimeSynchronizer(1, queue_size=2, slop_s=0.0)
    assert names(sync.add(msg("a", 1.0), 0)) == ["a"]
    assert sync.add(msg("old", 0.5), 0) is None
    assert sync.stats.dropped["stale"] == [1]


@pytest.mark.parametrize("kwargs", [dict(num_inputs=0), dict(queue_size=0), dict(slop_s=-0.1)])
def test_invalid_settings_are_rejected(kwargs):
    settings = dict(num_inputs=2, queue_size=3, slop_s=0.01) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ApproximateTimeSynchronizer(**settings)


def test_fallback_subscriptions_feed_the_synchroniser():
    """Without message_filters, plain subscriptions feed the package's synchroniser."""
    pytest.importorskip("rclpy")
    try:
        import message_filters  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("message_filters is installed: the fallback is not used")
    subscriptions = []

    class RecordingNode:
        def create_subscription(self, msg_type, topic, callback, qos, callback_group=None):
            subscriptions.append((topic, callback))
            return topic

    received = []
    inputs = create_synchronized_subscriptions(
        RecordingNode(), [(object, "color"), (object, "depth")], 10, queue_size=4, slop_s=0.01,
        callback=lambda *m: received.append(names(m)),
    )
    assert inputs.backend == "gs4_slam" and inputs.stats is not None
    assert [topic for topic, _ in subscriptions] == ["color", "depth"]
    info = {"publication_sequence_number": 1, "publisher_gid": {"data": b"driver"}}
    subscriptions[1][1](msg("d", 1.0), info)
    subscriptions[0][1](msg("c", 1.0), info)
    assert received == [["c", "d"]]
    subscriptions[0][1](msg("c", 2.0), info | {"publication_sequence_number": 4})  # 2 and 3 never arrived
    assert inputs.stats.dropped["lost"] == [2, 0]
