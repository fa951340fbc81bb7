"""The node's pipeline thread and path confinement, without ROS: queue bound, accounting, tasks, paths."""
from __future__ import annotations

import threading
import time

import pytest

from gs4_slam.ros.services import PathRefused, confined_map_path
from gs4_slam.ros.worker import PeriodicThread, PipelineWorker

pytestmark = pytest.mark.ros


class Gate:
    """A frame handler that blocks until released, recording what it handled."""

    def __init__(self) -> None:
        self.handled: list = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, item):
        self.entered.set()
        self.release.wait(10)
        if item == "bad":
            return False
        if item == "boom":
            raise RuntimeError("boom")
        self.handled.append(item)
        return True


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def gate():
    gate = Gate()
    errors: list[BaseException] = []
    worker = PipelineWorker(gate, queue_size=2, on_error=errors.append)
    worker.start()
    gate.errors = errors
    yield gate, worker
    gate.release.set()
    worker.stop()


def test_a_full_queue_drops_the_oldest_and_counts_it(gate):
    gate, worker = gate
    for item in ["first", "a", "b", "c", "d"]:
        worker.note_received()
        worker.submit(item)
        if item == "first":
            assert gate.entered.wait(5)  # "first" is in progress, the rest queue up
    counts = worker.counts()
    assert counts.queued == 2 and counts.dropped["queue_full"] == 2
    gate.release.set()
    assert wait_for(lambda: worker.counts().processed == 3)
    assert gate.handled == ["first", "c", "d"]  # the newest frames survive
    counts = worker.counts()
    assert counts.received == counts.processed + counts.total_dropped + counts.queued


def test_rejected_and_failing_frames_are_counted_not_fatal(gate):
    gate, worker = gate
    gate.release.set()
    for item in ["bad", "boom", "good"]:
        worker.submit(item)
        assert wait_for(lambda: not worker.counts().queued)
    worker.drop("invalid")  # what a handler does for input it rejects
    assert wait_for(lambda: worker.counts().processed == 1)
    counts = worker.counts()
    assert counts.dropped["error"] == 1 and counts.dropped["invalid"] == 1
    assert [str(e) for e in gate.errors] == ["boom"] and gate.handled == ["good"]


def test_tasks_run_on_the_pipeline_thread_before_queued_frames(gate):
    gate, worker = gate
    worker.submit("first")
    assert gate.entered.wait(5)
    worker.submit("queued")
    order = []
    result = {}
    caller = threading.Thread(target=lambda: result.update(value=worker.run_task(
        lambda: order.append(("task", list(gate.handled))) or threading.current_thread().name, 5.0)))
    caller.start()
    time.sleep(0.1)
    gate.release.set()
    caller.join(5)
    assert result["value"] == "gs4_slam_pipeline"
    assert order == [("task", ["first"])]  # after the frame in progress, before the queued one
    assert wait_for(lambda: gate.handled == ["first", "queued"])
    with pytest.raises(ZeroDivisionError):
        worker.run_task(lambda: 1 / 0, 5.0)


def test_pause_drops_queued_and_arriving_frames_until_resume(gate):
    gate, worker = gate
    worker.submit("first")
    assert gate.entered.wait(5)
    worker.submit("queued")
    assert worker.pause() == 1 and worker.paused
    assert not worker.submit("while paused")
    worker.resume()
    worker.submit("after")
    gate.release.set()
    assert wait_for(lambda: gate.handled == ["first", "after"])
    assert worker.counts().dropped["paused"] == 2


def test_a_slow_task_times_out_and_stop_fails_pending_tasks():
    worker = PipelineWorker(lambda item: True, queue_size=1)
    worker.start()
    release = threading.Event()
    with pytest.raises(TimeoutError):
        worker.run_task(lambda: release.wait(5), 0.2)
    release.set()
    worker.stop()
    with pytest.raises(RuntimeError, match="shutting down"):
        worker.run_task(lambda: None, 1.0)


def test_periodic_thread_ticks_and_survives_errors():
    ticks, errors = [], []

    def tick():
        ticks.append(1)
        if len(ticks) == 2:
            raise ValueError("render failed")

    thread = PeriodicThread(tick, 0.01, errors.append)
    thread.start()
    assert wait_for(lambda: len(ticks) >= 5)
    thread.stop()
    assert [str(e) for e in errors] == ["render failed"]


def test_map_paths_are_confined_to_the_output_directory(tmp_path):
    out = tmp_path / "maps"
    out.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (out / "escape").symlink_to(outside, target_is_directory=True)
    assert confined_map_path(out, "") == (out / "map.ply").resolve()
    assert confined_map_path(out, "runs/a.ply") == (out / "runs" / "a.ply").resolve()
    assert confined_map_path(out, str(out / "b.ply")) == (out / "b.ply").resolve()  # absolute, but inside
    assert confined_map_path(out, "runs/../c.ply") == (out / "c.ply").resolve()
    for request in ["../x.ply", str(outside / "x.ply"), "escape/x.ply", "/etc/x.ply", "~/x.ply"]:
        with pytest.raises(PathRefused, match="outside the output directory"):
            confined_map_path(out, request)
    with pytest.raises(PathRefused, match="must end in .ply"):
        confined_map_path(out, "map.npz")
    with pytest.raises(PathRefused, match="no map file"):
        confined_map_path(out, "missing.ply", must_exist=True)
    (out / "there.ply").write_text("ply\n")
    assert confined_map_path(out, "there.ply", must_exist=True).name == "there.ply"
