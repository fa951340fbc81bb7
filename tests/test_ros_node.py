"""The SLAM node end to end: real rclpy, separate processes, loopback only.

A player process publishes synthetic frames like a RealSense driver, the node runs as
``python -m gs4_slam.ros.slam_node``, and this process listens and calls services.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

FRAMES = 60
START_S = 100.0
WIDTH, HEIGHT = 160, 128
CAMERA_FRAME = "camera_color_optical_frame"
#: A small, deterministic pipeline: mapping inline (no thread timing), the baseline predictor,
#: and no keyframe pose feedback (the optimisation's parallel backward sums are not
#: bit-reproducible; through the feedback that noise reaches the trajectory).
PIPELINE = ["-p", f"working_width:={WIDTH}", "-p", f"working_height:={HEIGHT}",
            "-p", "predictor.use_baseline:=true", "-p", "mapping.threaded:=false",
            "-p", "use_refined_keyframe_poses:=false"]


@pytest.fixture(scope="module")
def ros():
    pytest.importorskip("rclpy")
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    from helpers import ros_listener

    return ros_listener


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def node_log(out_dir: Path) -> str:
    return (out_dir / "node.log").read_text()


@dataclasses.dataclass
class Run:
    out_dir: Path
    node: object
    listener: object


@pytest.fixture(scope="module")
def run(ros, tmp_path_factory):
    """One node run over 60 frames (with labels); its outputs are shared by the tests below."""
    out_dir = tmp_path_factory.mktemp("slam_node")
    node = ros.start_node(out_dir, "e2e", *PIPELINE, "-p", "use_labels:=true", "-p", "queue_size:=100",
                          "-p", "mapping.semantics.source:=both",
                          "-p", "render_rate_hz:=4.0", "-p", "map_cloud_rate_hz:=2.0")
    listener = ros.Listener("e2e")
    assert listener.wait_for_node(), node_log(out_dir)[-3000:]
    # 6 Hz: on a loaded machine one topic's callbacks can lag another's by more
    # than a 15 Hz frame period, and the synchroniser then (rightly) drops the late
    # partner; this test checks that every frame arrives, not the synchroniser.
    player = ros.start_player(out_dir, "e2e", "--frames", str(FRAMES), "--width", str(WIDTH), "--height", str(HEIGHT),
                              "--start-s", str(START_S), "--labels", "--rate-hz", "6")
    try:
        done = listener.spin_until(lambda: len(listener.received["pose"]) >= FRAMES, 120.0)
        assert done, f"{len(listener.received['pose'])} poses of {FRAMES}\n{node_log(out_dir)[-3000:]}"
        assert player.wait(30) == 0, (out_dir / "player.log").read_text()[-2000:]
        # Renders and the cloud come at their own rates: wait for ones of the last frame.
        last = START_S + (FRAMES - 1) / 30.0
        received = listener.received
        listener.spin_until(lambda: any(abs(stamp_s(m) - last) < 1e-6 for m in received["render/color"])
                            and received["map_cloud"] and received["status"]
                            and received["status"][-1].processed_frames == FRAMES
                            and received["path"] and len(received["path"][-1].poses) == FRAMES, 20.0)
        yield Run(out_dir, node, listener)
    finally:
        ros.stop(player)
        assert ros.stop(node) == 0, node_log(out_dir)[-3000:]
        listener.close()


def expected_stamps() -> list[float]:
    return [START_S + i / 30.0 for i in range(FRAMES)]


def test_pose_odometry_and_path_arrive_with_frame_ids_and_stamps(run):
    poses = list(run.listener.received["pose"])
    assert [round(stamp_s(p), 6) for p in poses] == [round(t, 6) for t in expected_stamps()]
    assert {p.header.frame_id for p in poses} == {"map"}
    odometry = run.listener.received["odometry"][-1]
    assert (odometry.header.frame_id, odometry.child_frame_id) == ("map", CAMERA_FRAME)
    path = run.listener.received["path"][-1]
    assert path.header.frame_id == "map" and len(path.poses) == FRAMES
    assert stamp_s(path.poses[-1]) == pytest.approx(expected_stamps()[-1], abs=1e-6)


def test_cloud_renders_and_status_arrive(run):
    from gs4_slam.msg import SlamStatus
    from gs4_slam.ros.conversions import structured_from_pointcloud2

    stamps = {round(t, 6) for t in expected_stamps()}
    cloud = run.listener.received["map_cloud"][-1]
    points = structured_from_pointcloud2(cloud)
    assert cloud.header.frame_id == "map" and round(stamp_s(cloud), 6) in stamps and len(points) > 100
    assert {"x", "rgb", "label", "confidence", "scale_x", "rot_w", "opacity"} <= set(points.dtype.names)
    assert np.all(np.isfinite(points["x"])) and np.all((points["opacity"] > 0) & (points["opacity"] < 1))
    for name, encoding in [("render/color", "rgb8"), ("render/depth", "32FC1"), ("render/semantic", "rgb8"),
                           ("render/semantic_confidence", "32FC1")]:
        image = run.listener.received[name][-1]
        assert (image.header.frame_id, image.encoding) == (CAMERA_FRAME, encoding), name
        assert (image.width, image.height) == (WIDTH, HEIGHT) and round(stamp_s(image), 6) in stamps
    depth = np.frombuffer(bytes(run.listener.received["render/depth"][-1].data), "<f4")
    assert np.median(depth[depth > 0]) > 0.3  # the rendered room is metres away
    status = run.listener.received["status"][-1]
    assert status.header.frame_id == "map"
    assert (status.input_frames, status.processed_frames, status.dropped_frames) == (FRAMES, FRAMES, 0)
    assert status.tracking_state == SlamStatus.TRACKING_OK and status.tracking_state_name == "OK"
    assert status.num_gaussians > 0 and status.num_keyframes >= 1 and "total_ms" in status.stage_names
    diagnostics = [s for array in run.listener.received["diagnostics"] for s in array.status]
    assert any(s.name.startswith("slam_node") and s.hardware_id == "gs4_slam" for s in diagnostics)


def test_missing_tf2_is_said_once(run):
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert node_log(run.out_dir).count("tf2_ros is not available") == 1
    else:
        assert "tf2_ros is not available" not in node_log(run.out_dir)


def test_trajectory_matches_the_offline_pipeline(run):
    """The node's poses equal the pipeline run in-process on the same frames (what `gs4-slam run` does)."""
    from gs4_slam.slam import Slam, load_slam_config
    from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

    config = load_slam_config(overrides={"working_width": WIDTH, "working_height": HEIGHT,
                                         "predictor": {"use_baseline": True}, "mapping": {"threaded": False},
                                         "use_refined_keyframe_poses": False})
    sequence = SyntheticSequence(SyntheticConfig(seed=0, frames=FRAMES, width=WIDTH, height=HEIGHT))
    slam = Slam(config)
    try:
        offline = [slam.process(dataclasses.replace(sequence.frame(i), timestamp_s=t)).T_world_cam.matrix
                   for i, t in enumerate(expected_stamps())]
    finally:
        slam.close()
    from gs4_slam.ros.conversions import pose_from_pose_msg

    online = [pose_from_pose_msg(p.pose).matrix for p in run.listener.received["pose"]]
    translation_error = [np.linalg.norm(a[:3, 3] - b[:3, 3]) for a, b in zip(online, offline)]
    assert max(translation_error) < 1e-4, f"max translation difference {max(translation_error):.2e} m"
    assert np.linalg.norm(offline[-1][:3, 3] - offline[0][:3, 3]) > 0.1  # the camera did move


def test_save_map_writes_a_ply_that_loads_and_paths_are_confined(run, tmp_path):
    from gs4_slam.map_io import load_map
    from gs4_slam.srv import LoadMap, SaveMap

    saved = run.listener.call(SaveMap, "save_map", SaveMap.Request(path="maps/run1.ply"))
    assert saved.success, saved.message
    target = run.out_dir / "maps" / "run1.ply"
    # Saving first refines the map (config/slam.yaml: mapping.final_refinement), which may prune.
    assert target.is_file() and f"{len(load_map(target))} Gaussians, after 400 refinement steps" in saved.message
    # With the trajectory of every processed frame, each following its keyframe's refined pose.
    saved_trajectory = np.loadtxt(run.out_dir / "maps" / "run1_trajectory.txt")
    assert saved_trajectory.ndim == 2 and saved_trajectory.shape[1] == 8 and len(saved_trajectory) > 1

    outside = tmp_path / "outside.ply"
    (run.out_dir / "link").symlink_to(tmp_path, target_is_directory=True)
    for request in [str(outside), "../outside.ply", "link/outside.ply", "maps/run1.txt"]:
        refused = run.listener.call(SaveMap, "save_map", SaveMap.Request(path=request))
        assert not refused.success and "refused" in refused.message and request in refused.message, request
    assert not outside.exists() and not list(tmp_path.iterdir())

    loaded = run.listener.call(LoadMap, "load_map", LoadMap.Request(path="maps/run1.ply"))
    assert loaded.success and "loaded" in loaded.message, loaded.message
    missing = run.listener.call(LoadMap, "load_map", LoadMap.Request(path="maps/none.ply"))
    assert not missing.success and "none.ply" in missing.message
    escaping = run.listener.call(LoadMap, "load_map", LoadMap.Request(path=str(target.resolve().parent / ".." / "..")))
    assert not escaping.success


def test_label_images_are_fused_and_classes_can_be_queried(run):
    from gs4_slam.ros.conversions import structured_from_pointcloud2
    from gs4_slam.srv import QueryClass

    confidence = np.frombuffer(bytes(run.listener.received["render/semantic_confidence"][-1].data), "<f4")
    assert np.all((confidence >= 0) & (confidence <= 1)) and np.median(confidence) > 0.5
    points = structured_from_pointcloud2(run.listener.received["map_cloud"][-1])
    # The baseline predictor's classes are uniform (confidence 1/20), so a class that wins came from
    # the label images. (Saving densified the map: Gaussians no label image has seen carry the blend
    # the map renders at their place, less certain than the observed ones.)
    assert np.median(points["confidence"]) > 0.25 and len(np.unique(points["label"])) >= 2
    floor = run.listener.call(QueryClass, "query_class", QueryClass.Request(class_name="floor"))
    assert floor.success and floor.count > 0 and len(floor.centroids) >= 1, floor.message
    assert len(floor.centroids) == len(floor.bbox_min) == len(floor.bbox_max) == len(floor.cluster_sizes)
    assert sum(floor.cluster_sizes) <= floor.count
    lo, c, hi = floor.bbox_min[0], floor.centroids[0], floor.bbox_max[0]
    assert lo.x <= c.x <= hi.x and lo.y <= c.y <= hi.y and lo.z <= c.z <= hi.z
    unknown = run.listener.call(QueryClass, "query_class", QueryClass.Request(class_name="spaceship"))
    assert not unknown.success and "valid classes" in unknown.message and "floor" in unknown.message


def test_reset_pause_and_resume(run):
    from std_srvs.srv import Trigger

    for name in ("pause", "resume", "reset"):
        response = run.listener.call(Trigger, name, Trigger.Request())
        assert response.success, f"{name}: {response.message}"
    run.listener.received["status"].clear()
    assert run.listener.spin_until(lambda: run.listener.received["status"], 5.0)
    assert run.listener.received["status"][-1].tracking_state_name == "INITIALIZING"


def test_bad_input_is_reported_and_processing_continues(ros, tmp_path):
    """Frames without camera_info, with an unsupported encoding, a colour/depth size mismatch,
    NaN depth and an out-of-order stamp: each is named in a warning; the good ones are tracked."""
    from helpers.frame_player import BAD_FRAMES

    frames = 16
    node = ros.start_node(tmp_path, "bad", *PIPELINE, "-p", "queue_size:=50", "-p", "render_rate_hz:=2.0",
                          "-p", "map_cloud_rate_hz:=0.0", "-p", "virtual_camera.enabled:=true",
                          "-p", "virtual_camera.position:=[0.0, 0.0, -0.5]")
    listener = ros.Listener("bad")
    assert listener.wait_for_node(), node_log(tmp_path)[-3000:]
    player = ros.start_player(tmp_path, "bad", "--frames", str(frames), "--width", str(WIDTH), "--height", str(HEIGHT),
                              "--start-s", str(START_S), "--scenario", "bad")
    skipped = {0, 1} | {i for i, problem in BAD_FRAMES.items() if problem != "nan"}
    good = [START_S + i / 30.0 for i in range(frames) if i not in skipped]
    try:
        arrived = listener.spin_until(lambda: len(listener.received["pose"]) >= len(good), 90.0)
        assert player.wait(30) == 0
        listener.spin_until(lambda: listener.received["status"]
                            and listener.received["status"][-1].processed_frames == len(good), 5.0)
        log = node_log(tmp_path)
        assert arrived, log[-3000:]
        assert [round(stamp_s(p), 6) for p in listener.received["pose"]] == [round(t, 6) for t in good]
        for problem in ["no camera_info", "unsupported colour encoding 'yuv422'",
                        "size mismatch: colour is 160x128, depth is 80x64", "NaN", "out-of-order stamp"]:
            assert problem in log, f"no warning about {problem!r}:\n{log[-3000:]}"
        status = listener.received["status"][-1]
        assert status.processed_frames == len(good)
        assert status.dropped_frames == len(skipped) and status.input_frames == frames
        listener.spin_until(lambda: listener.received["render/color"], 5.0)
        render = listener.received["render/color"][-1]  # the fixed virtual camera's view
        assert render.header.frame_id == "virtual_camera" and round(stamp_s(render), 6) in {round(t, 6) for t in good}
        assert node.poll() is None, "the node died"
    finally:
        ros.stop(player)
        assert ros.stop(node) == 0, node_log(tmp_path)[-3000:]
        listener.close()


def test_invalid_parameter_stops_the_node_with_a_message(ros, tmp_path):
    node = ros.start_node(tmp_path, "invalid", "-p", "working_width:=100")
    assert node.wait(60) == 2
    log = node_log(tmp_path)
    assert "working_width" in log and "step" in log


@pytest.mark.slow
def test_overload_drops_are_counted_and_memory_stays_flat(ros, tmp_path):
    """Frames at (at least) 3x the processing rate: the queue drops the oldest, counts it, memory is flat.

    The camera stands still (one frame, fresh stamps) with mapping inline, so the pipeline's own
    memory stays flat (a map that keeps growing would hide what this test is about: the node's
    queues). An unbounded input queue would grow by ~0.5 MB per dropped frame here.
    A camera jumping back and forth over 4 frames 11 ms apart, which no camera does, threw the
    tracker's constant-velocity prediction off whenever CPU contention changed which frames were
    dropped: the map then grew (1 -> 10 keyframes, 1200 -> 3250 Gaussians, +180 MB RSS).
    """
    # The player's clock starts before the node is ready (slow under a loaded CI
    # machine), so the run is long enough to leave >= 20 s of overload to sample.
    seconds, rate_hz = 45.0, 90.0
    node = ros.start_node(tmp_path, "overload", "-p", "predictor.use_baseline:=true", "-p", "queue_size:=2",
                          "-p", "mapping.threaded:=false", "-p", "render_rate_hz:=1.0", "-p", "map_cloud_rate_hz:=0.5")
    listener = ros.Listener("overload")
    assert listener.wait_for_node(), node_log(tmp_path)[-3000:]
    player = ros.start_player(tmp_path, "overload", "--scenario", "overload", "--frames", "1", "--width", "320",
                              "--height", "240", "--rate-hz", str(rate_hz), "--seconds", str(seconds),
                              "--depth-encoding", "16UC1")
    try:
        assert listener.spin_until(lambda: len(listener.received["pose"]) >= 3, 60.0), node_log(tmp_path)[-3000:]
        listener.spin_until(lambda: False, 2.0)  # warm up: map, caches, allocator
        rss_samples = []
        while player.poll() is None:
            listener.spin_until(lambda: False, 0.5)
            rss_samples.append(ros.rss_mb(node.pid))
        assert player.returncode == 0
        assert len(rss_samples) >= 12, f"only {len(rss_samples)} memory samples: the node started too late"
        listener.spin_until(lambda: False, 3.0)
        status = listener.received["status"][-1]
        published = sum(1 for line in (tmp_path / "player.log").read_text().splitlines()
                        if line.startswith("published"))
        processing_hz = status.processed_frames / seconds
        assert published / seconds >= 3.0 * processing_hz, (published, status.processed_frames)
        assert status.dropped_frames > 0.5 * published
        assert published - 2 <= status.input_frames <= published  # a loss after the last arrival has no gap to show
        assert status.input_frames - status.processed_frames - status.dropped_frames <= 3  # queued + in progress
        assert status.num_keyframes == 1, status.num_keyframes  # the map did not grow: a still camera
        # Renders and allocator arenas make RSS step and spike; a growing queue would raise its
        # level steadily (~40 MB/s at this input), so compare the typical level early and late.
        third = len(rss_samples) // 3
        early, late = np.median(rss_samples[:third]), np.median(rss_samples[-third:])
        assert late - early < 80.0, f"node memory grew from {early:.0f} to {late:.0f} MB: {rss_samples}"
        assert node.poll() is None
    finally:
        ros.stop(player)
        assert ros.stop(node) == 0, node_log(tmp_path)[-3000:]
        listener.close()


def test_ctrl_c_racing_a_callback_is_a_normal_stop(ros, tmp_path, monkeypatch):
    """rclpy's signal handler shuts the context down asynchronously; a callback or the
    executor that touches rcl a moment later raises RCLError. That is Ctrl-C (exit 0,
    the node's threads stopped); an error while the context is up still propagates."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from gs4_slam.ros import slam_node

    stopped = []

    class ShutdownMidSpin(MultiThreadedExecutor):
        def spin(self):
            node = self.get_nodes()[0]
            monkeypatch.setattr(node, "close", lambda real=node.close: stopped.append(real()))
            rclpy.shutdown(context=node.context)  # what the signal handler does
            node.create_timer(0.1, lambda: None)  # raises RCLError: the context is down

    class FailingSpin(MultiThreadedExecutor):
        def spin(self):
            raise RuntimeError("a real error")

    args = ["--ros-args", *PIPELINE, "-p", f"output_dir:={tmp_path}"]
    monkeypatch.setattr(slam_node, "MultiThreadedExecutor", ShutdownMidSpin)
    assert slam_node.main(args) == 0
    assert stopped == [None], "the node's threads are stopped on the way out"
    monkeypatch.setattr(slam_node, "MultiThreadedExecutor", FailingSpin)
    with pytest.raises(RuntimeError, match="a real error"):
        slam_node.main(args)
    assert not rclpy.ok(), "the context is shut down either way"
