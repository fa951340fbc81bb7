"""The dataset player's timing and settings, and the replay command's helpers, without ROS."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs4_slam.camera import Pose
from gs4_slam.playback_clock import PlaybackClock
from gs4_slam.ros.playback import PlayerConfig, ReaderParams, playback_order, reader_options


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_clock_spaces_frames_by_the_rate():
    now = FakeTime()
    clock = PlaybackClock(rate=2.0, now=now)
    assert clock.due(10.0)  # the first frame anchors the schedule
    assert not clock.due(11.0)
    now.t += 0.49
    assert not clock.due(11.0) and clock.wait_s(11.0) == pytest.approx(0.01)
    now.t += 0.01
    assert clock.due(11.0)


def test_clock_pause_shifts_the_schedule_and_never_bursts_after_a_stall():
    now = FakeTime()
    clock = PlaybackClock(rate=1.0, max_lag_s=0.25, now=now)
    clock.due(0.0)
    clock.pause()
    now.t += 5.0
    assert not clock.due(1.0) and clock.wait_s(1.0) == float("inf")
    clock.resume()
    assert clock.wait_s(1.0) == pytest.approx(1.0)  # the pause does not count as played time
    now.t += 3.0  # a stall: frame 1 is 2 s late
    assert clock.due(1.0)
    assert not clock.due(2.0) and clock.wait_s(2.0) == pytest.approx(1.0)  # re-anchored, no catch-up burst


def test_clock_keeps_small_lateness_without_drifting():
    now = FakeTime()
    clock = PlaybackClock(rate=1.0, now=now)
    clock.due(0.0)
    for i in range(1, 30):
        now.t = 100.0 + i / 30.0 + 0.004  # every frame a timer tick late
        assert clock.due(i / 30.0)
    assert clock.wait_s(1.0) == pytest.approx(1.0 - 29 / 30.0 - 0.004)


def test_clock_rejects_a_non_positive_rate():
    with pytest.raises(ValueError, match="rate"):
        PlaybackClock(rate=0.0)


def test_order_honours_the_start_offset_and_ends():
    t = np.arange(10) / 10.0 + 5.0
    order = list(playback_order(t, start_offset_s=0.35))
    assert [s.index for s in order] == [4, 5, 6, 7, 8, 9]
    assert [s.last_of_pass for s in order] == [False] * 5 + [True]
    with pytest.raises(ValueError, match="beyond the end"):
        next(playback_order(t, start_offset_s=2.0))


def test_looping_keeps_times_increasing():
    t = np.array([0.0, 0.1, 0.2])
    order = playback_order(t, loop=True)
    items = [next(order) for _ in range(7)]
    assert [s.index for s in items] == [0, 1, 2, 0, 1, 2, 0]
    assert [s.pass_number for s in items] == [0, 0, 0, 1, 1, 1, 2]
    times = [s.t_s for s in items]
    assert np.all(np.diff(times) > 0) and times[3] == pytest.approx(0.3)


def test_player_config_checks_its_values():
    assert PlayerConfig().rate == 1.0
    for bad in ({"rate": 0.0}, {"start_offset_s": -1.0}, {"path": "a", "bag": "b"}, {"frame_id": ""}):
        with pytest.raises(ValueError):
            PlayerConfig(**bad)
    with pytest.raises(ValueError, match="both"):
        ReaderParams(width=320)


def test_reader_parameters_become_reader_options():
    options = reader_options(ReaderParams(stride=2, start=3, limit=0, width=320, height=240, depth_scale=5000.0,
                                          preset="fr1", intrinsics=(500.0, 0.0, 0.0, 200.0)))
    assert (options.stride, options.start, options.limit, options.resize) == (2, 3, None, (320, 240))
    assert (options.depth_scale, options.preset) == (5000.0, "fr1")
    assert (options.fx, options.fy, options.cx, options.cy) == (500.0, None, None, 200.0)
    default = reader_options(ReaderParams())
    assert default.resize is None and default.depth_scale is None and not default.overrides_intrinsics


def test_open_source_needs_a_path_unless_synthetic():
    from gs4_slam.ros.playback import GeneratedSequence, GeneratedRoom, open_source

    with pytest.raises(ValueError, match="path"):
        open_source(PlayerConfig(dataset="tum"))
    room = open_source(PlayerConfig(dataset="synthetic", synthetic=GeneratedRoom(frames=3, width=32, height=24)))
    assert isinstance(room, GeneratedSequence) and len(room) == 3
    assert np.allclose(room.timestamps_s(), [0.0, 1 / 30, 2 / 30])
    assert room[1].color_rgb.shape == (24, 32, 3) and room.gt_poses()[1] is not None


# ---------------------------------------------------------------------- parameter files, replay helpers


def test_parameter_file_sections_match_like_rcl(tmp_path):
    from gs4_slam.ros.params_files import fully_qualified, node_parameters

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters: {a: 1}\n"
                    "/**/slam_node:\n  ros__parameters: {b: {c: 2}}\n"
                    "slam_node:\n  ros__parameters: {d: 3}\n"
                    "/ns/*:\n  ros__parameters: {e: 4}\n")
    assert node_parameters(path, fully_qualified("", "slam_node")) == {"a": 1, "b.c": 2, "d": 3}
    assert node_parameters(path, fully_qualified("/ns/", "slam_node")) == {"a": 1, "b.c": 2, "e": 4}
    assert node_parameters(path, fully_qualified("ns", "dataset_player")) == {"a": 1, "e": 4}


def test_overrides_parse_like_ros():
    from gs4_slam.ros.params_files import parse_override

    assert parse_override("mapping.threaded:=false") == ("mapping.threaded", False)
    assert parse_override("rate:=2") == ("rate", 2)
    assert parse_override('path:="/a b"') == ("path", "/a b")
    assert parse_override("reader.intrinsics:=[1.0, 2.0, 3.0, 4.0]")[1] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="NAME:=VALUE"):
        parse_override("rate=2")


def test_poses_are_matched_to_frames_by_stamp():
    from gs4_slam.replay_command import match_poses

    timestamps = np.array([1305031102.175304, 1305031102.211214, 1305031102.243211])
    pose = Pose.identity()
    poses = [(round(t * 1e9), pose) for t in timestamps[[0, 2]]] + [(5_000_000_000, pose)]
    matched = match_poses(poses, timestamps)
    assert [m.index for m in matched] == [0, 2]
    assert matched[1].timestamp_s == timestamps[2]


def test_safe_environment_confines_dds_to_this_machine(tmp_path):
    from gs4_slam.ros.processes import safe_ros_environment

    env = safe_ros_environment(tmp_path / "ros", base={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "PATH": "/bin"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_loopback.xml")
    assert env["ROS_HOME"] == str(tmp_path / "ros") and env["ROS_LOG_DIR"].startswith(env["ROS_HOME"])
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["PATH"] == "/bin"


def test_generated_sequence_is_reused_only_when_it_is_the_same(tmp_path):
    from gs4_slam.replay_command import ensure_sequence

    room = tmp_path / "room"
    ensure_sequence(room, seed=1, frames=2, width=32, height=24, noise=False)
    stamp = (room / "color" / "0.jpg").stat().st_mtime_ns
    ensure_sequence(room, seed=1, frames=2, width=32, height=24, noise=False)
    assert (room / "color" / "0.jpg").stat().st_mtime_ns == stamp
    assert json.loads((room / "scene.json").read_text())["config"]["seed"] == 1
    with pytest.raises(ValueError, match="seed"):
        ensure_sequence(room, seed=2, frames=2, width=32, height=24, noise=False)


def test_replay_and_record_commands_are_registered():
    from gs4_slam.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["replay", "synthetic", "room", "--generate", "--stride", "2", "-p", "a:=1"])
    assert (args.kind, args.generate, args.stride, args.start, args.param) == ("synthetic", True, 2, None, ["a:=1"])
    args = parser.parse_args(["record", "--out", "bag", "--idle-stop", "3"])
    assert args.idle_stop == 3.0 and args.storage == "sqlite3"


class FakeGraph:
    """The part of an rclpy node the recorder's idle check asks: who publishes a topic."""

    def __init__(self, publishers: int) -> None:
        self.publishers = publishers

    def count_publishers(self, _topic: str) -> int:
        return self.publishers


def test_record_idle_stop_waits_while_a_publisher_is_left(tmp_path):
    """A replay's player pauses while slam_node catches up: a quiet but present publisher is not idle."""
    import time

    from gs4_slam.record_command import Recorder, RecordConfig, _done

    config = RecordConfig(out=tmp_path / "bag", idle_stop_s=3.0)
    graph = FakeGraph(publishers=1)
    recorder = Recorder(graph, writer=None, topics=["/camera/color/image_raw"])
    start = time.monotonic() - 60.0
    assert not _done(config, recorder, start)  # nothing received yet
    recorder.last_message_at = time.monotonic() - 10.0
    recorder.note_publishers()
    assert not _done(config, recorder, start)  # paused player: 10 s without a message
    graph.publishers = 0
    recorder.last_publisher_at = time.monotonic() - 2.0
    recorder.note_publishers()
    assert not _done(config, recorder, start)  # gone only 2 s ago: messages may still be on their way
    recorder.last_publisher_at = time.monotonic() - 3.5
    assert _done(config, recorder, start)
