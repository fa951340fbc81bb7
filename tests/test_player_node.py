"""dataset_player alone: what it publishes, timing, loop, pause; real rclpy, a separate process, loopback only."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

FRAMES, WIDTH, HEIGHT = 8, 64, 48
CAMERA_FRAME = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def helpers():
    pytest.importorskip("rclpy")
    from helpers import player_listener

    return player_listener


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """A small synthetic room in the ScanNet layout (labels and poses included)."""
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    path = tmp_path_factory.mktemp("player") / "room"
    write_sequence(path, SyntheticConfig(seed=2, frames=FRAMES, width=WIDTH, height=HEIGHT, noise=True))
    return path


def _stop(process, timeout_s: float = 20.0) -> int:
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def test_publishes_the_dataset_as_a_realsense_would(helpers, room, tmp_path):
    from gs4_slam.datasets import open_dataset
    from gs4_slam.ros.conversions import depth_from_image, intrinsics_from_camera_info, pose_from_pose_msg
    from gs4_slam.ros.conversions import rgb_from_image

    reader = open_dataset("synthetic", room)
    listener = helpers.PlayerListener("player_a")
    player = helpers.start_player(tmp_path / "player.log", "player_a", "dataset:=synthetic", f"path:={room}",
                                  "stamps:=dataset", "rate:=4.0", "wait_for_subscribers:=1", "exit_at_end:=true")
    try:
        done = listener.spin_until(lambda: listener.received["end"] and len(listener.received["color"]) == FRAMES,
                                   60.0)
        assert done, (tmp_path / "player.log").read_text()[-2000:]
        assert player.wait(20) == 0, (tmp_path / "player.log").read_text()[-2000:]
        listener.spin_until(lambda: len(listener.received["ground_truth"]) == FRAMES, 2.0)
        colors, depths = listener.messages("color"), listener.messages("depth")
        assert {m.encoding for m in colors} == {"rgb8"} and {m.encoding for m in depths} == {"16UC1"}
        assert {m.header.frame_id for m in colors + depths + listener.messages("info")} == {CAMERA_FRAME}
        stamps = [helpers.stamp_s(m) for m in colors]
        assert np.allclose(stamps, reader.timestamps_s(), atol=1e-6) and np.all(np.diff(stamps) > 0)
        assert [helpers.stamp_s(m) for m in depths] == stamps
        for k in (0, FRAMES - 1):
            frame = reader[k]
            assert np.array_equal(rgb_from_image(colors[k]), frame.color_rgb)
            assert np.array_equal(depth_from_image(depths[k]), frame.depth_m)  # mm in, mm out
        info = listener.messages("info")[-1]
        assert (info.width, info.height, info.distortion_model) == (WIDTH, HEIGHT, "plumb_bob")
        assert intrinsics_from_camera_info(info) == reader.intrinsics and len(info.d) == 5
        assert list(info.p[:3]) == [reader.intrinsics.fx, 0.0, reader.intrinsics.cx]
        assert listener.messages("depth_info")[-1].k.tolist() == info.k.tolist()
        labels = listener.messages("labels")[-1]
        assert labels.encoding == "mono8" and bytes(labels.data) == reader[FRAMES - 1].labels.tobytes()
        truth = listener.messages("ground_truth")
        assert {m.header.frame_id for m in truth} == {"map"}
        first, last = (pose_from_pose_msg(m.pose) for m in (truth[0], truth[-1]))
        assert np.allclose(first.matrix, np.eye(4), atol=1e-9)  # relative to the first frame, like SLAM
        expected = reader[0].T_world_cam_gt.inverse() @ reader[FRAMES - 1].T_world_cam_gt
        assert np.allclose(last.matrix, expected.matrix, atol=1e-6)
        assert listener.messages("end")[-1].data == FRAMES
    finally:
        _stop(player)
        listener.close()


def test_unsynchronised_colour_keeps_its_own_stamp(helpers, tmp_path):
    """TUM records colour and depth apart (here colour 4 ms earlier): colour and its camera_info say so."""
    from helpers.tum_folder import make_tum

    root = make_tum(tmp_path / "fr1_small", n=4)
    listener = helpers.PlayerListener("player_tum")
    player = helpers.start_player(tmp_path / "player.log", "player_tum", "dataset:=tum", f"path:={root}",
                                  "stamps:=dataset", "rate:=4.0", "wait_for_subscribers:=1", "exit_at_end:=true")
    try:
        assert listener.spin_until(lambda: listener.received["end"] and len(listener.received["color"]) == 4, 60.0), \
            (tmp_path / "player.log").read_text()[-2000:]
        listener.spin_until(lambda: len(listener.received["depth_info"]) >= 4, 2.0)
        depth = np.array([helpers.stamp_s(m) for m in listener.messages("depth")])
        color = np.array([helpers.stamp_s(m) for m in listener.messages("color")])
        np.testing.assert_allclose(depth, 10.004 + np.arange(4) / 30.0, atol=1e-6)  # frames carry the depth time
        np.testing.assert_allclose(color - depth, -0.004, atol=1e-6)
        assert [helpers.stamp_s(m) for m in listener.messages("info")][-4:] == pytest.approx(color.tolist(), abs=1e-9)
        assert [helpers.stamp_s(m) for m in listener.messages("depth_info")][-4:] == pytest.approx(depth.tolist(),
                                                                                                   abs=1e-9)
    finally:
        _stop(player)
        listener.close()


def test_rate_is_honoured_and_stamps_follow_the_clock(helpers, room, tmp_path):
    """rate 0.5 of a 30 Hz sequence: frames 1/15 s apart, stamped with the time of publishing."""
    import time

    listener = helpers.PlayerListener("player_b")
    player = helpers.start_player(tmp_path / "player.log", "player_b", "dataset:=synthetic", f"path:={room}",
                                  "rate:=0.5", "wait_for_subscribers:=1", "exit_at_end:=true")
    try:
        assert listener.spin_until(lambda: len(listener.received["color"]) == FRAMES, 60.0), \
            (tmp_path / "player.log").read_text()[-2000:]
        stamps = np.array([helpers.stamp_s(m) for m in listener.messages("color")])
        assert abs(stamps[-1] - time.time()) < 5.0  # "now" stamps, not the dataset's
        spacing = np.diff(stamps)
        assert np.all(spacing > 0)
        assert np.mean(spacing) == pytest.approx(2.0 / 30.0, rel=0.2), spacing
    finally:
        _stop(player)
        listener.close()


def test_loop_pause_and_resume(helpers, tmp_path):
    """A room generated in memory, looped: stamps keep increasing; nothing is published while paused."""
    import time

    from std_srvs.srv import Trigger

    listener = helpers.PlayerListener("player_c")
    player = helpers.start_player(tmp_path / "player.log", "player_c", "dataset:=synthetic", "synthetic.frames:=3",
                                  "synthetic.width:=32", "synthetic.height:=24", "loop:=true", "rate:=2.0",
                                  "stamps:=dataset", "wait_for_subscribers:=1")
    color = listener.received["color"]
    try:
        assert listener.spin_until(lambda: len(color) >= 7, 60.0), (tmp_path / "player.log").read_text()[-2000:]
        stamps = [helpers.stamp_s(m) for _, m in color]
        assert np.all(np.diff(stamps) > 0)
        assert np.allclose(stamps[3:6], np.array(stamps[:3]) + 3 / 30.0, atol=1e-6)  # second pass, shifted
        assert listener.messages("end")[-1].data % 3 == 0
        assert listener.call(Trigger, "pause", Trigger.Request()).success
        listener.spin_until(lambda: False, 0.3)  # a frame already on its way may still come in
        paused_count = len(color)
        listener.spin_until(lambda: False, 1.0)
        assert len(color) == paused_count, "frames published while paused"
        assert listener.call(Trigger, "resume", Trigger.Request()).success
        assert listener.spin_until(lambda: len(color) >= paused_count + 2, 10.0)
        assert player.poll() is None  # looping: never exits by itself
        t0 = time.monotonic()
        assert _stop(player) == 0 and time.monotonic() - t0 < 15.0
    finally:
        _stop(player)
        listener.close()


def test_a_missing_dataset_is_named_and_the_node_exits(helpers, tmp_path):
    missing = tmp_path / "no_such_sequence"
    player = helpers.start_player(tmp_path / "player.log", "player_d", "dataset:=tum", f"path:={missing}")
    try:
        assert player.wait(60) == 2
        assert str(missing) in (tmp_path / "player.log").read_text()
    finally:
        _stop(player)


def test_ctrl_c_while_a_timer_is_being_created_is_a_normal_stop(monkeypatch):
    """Ctrl-C shuts the context down from a signal handler, possibly just before the executor
    (or a tick) creates a timer, which then raises RCLError: exit 0, not a crash.
    An error while the context is still up is not swallowed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from gs4_slam.ros import dataset_player_node as player

    class ShutdownMidSpin(SingleThreadedExecutor):
        def spin_once(self, timeout_sec=None):
            node = self.get_nodes()[0]
            rclpy.shutdown(context=node.context)  # what the signal handler does
            node.create_timer(0.1, lambda: None)  # raised RCLError out of main() before

    class FailingSpin(SingleThreadedExecutor):
        def spin_once(self, timeout_sec=None):
            raise RuntimeError("a real error")

    args = ["--ros-args", "-p", "dataset:=synthetic", "-p", "synthetic.frames:=2", "-p", "synthetic.width:=32",
            "-p", "synthetic.height:=24"]
    monkeypatch.setattr(player, "SingleThreadedExecutor", ShutdownMidSpin)
    assert player.main(args) == 0
    monkeypatch.setattr(player, "SingleThreadedExecutor", FailingSpin)
    with pytest.raises(RuntimeError, match="a real error"):
        player.main(args)
    assert not rclpy.ok(), "the context is shut down either way"
