"""The mapping backend: owns the Gaussian map and merges predictions into it.

Jobs (a tracked frame, its pose and its predicted Gaussians) arrive through a
bounded queue and are handled by a background thread, so tracking never waits
for mapping. When the queue is full an in-between insertion job is skipped and
counted, never lost silently; a keyframe job takes the place of a pending
in-between job, or joins the queue beyond its size, up to ``max_pending_keyframes``
(under sustained overload the oldest pending keyframe then goes, counted), so
memory stays bounded. ``threaded=False`` handles each job inline
(deterministic, for tests and offline runs that want exact reproducibility).
"""
from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.mapping.densify import DensifyConfig, block_errors, densify
from gs4_slam.mapping.final_refinement import FinalRefinementConfig, FinalRefinementReport, refine_map
from gs4_slam.mapping.insertion import InsertionConfig, select_new
from gs4_slam.mapping.optimizer import (
    KeyframeMemory,
    KeyframeView,
    OptimizationConfig,
    OptimizationReport,
    apply,
    optimize_window,
    remove_floaters,
)
from gs4_slam.mapping.semantic_fusion import (
    SemanticFusionConfig,
    combine,
    external_observation,
    observe,
    predicted_observation,
)
from gs4_slam.refiner.refiner import FrameEvidence, GaussianRefiner, RefinerConfig
from gs4_slam.render import RenderOutput, render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MappingConfig:
    threaded: bool = True  # background mapping thread (False: inline, deterministic)
    queue_size: int = 2  # pending jobs; more are skipped and counted
    max_pending_keyframes: int = 4  # keyframe jobs waiting beyond this drop the oldest (counted)
    integrate_every: int = 5  # frames between insertions besides keyframes (0: keyframes only)
    max_gaussians: int = 50_000  # insertion stops (with a warning) at this size
    prune: bool = True  # floater removal (opacity, size, free space) on keyframes
    prune_every_keyframes: int = 1  # floater removal after every n-th keyframe
    insertion: InsertionConfig = field(default_factory=InsertionConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    refinement: RefinerConfig = field(default_factory=RefinerConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    semantics: SemanticFusionConfig = field(default_factory=SemanticFusionConfig)
    final_refinement: FinalRefinementConfig = field(default_factory=FinalRefinementConfig)

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"mapping.queue_size must be >= 1, got {self.queue_size}")
        if self.integrate_every < 0:
            raise ValueError(f"mapping.integrate_every must be >= 0, got {self.integrate_every}")


@dataclass
class MappingJob:
    frame_index: int
    color: Tensor  # [3, H, W] in [0, 1]
    depth_m: Tensor  # [H, W]
    intrinsics: Intrinsics  # pinhole
    T_world_cam: Pose
    prediction: GaussianSet
    keyframe_id: int | None  # set when the frame is a keyframe
    labels: Tensor | None = None  # [H, W] external class ids (IGNORE_LABEL = unknown), fused when configured

    @functools.cached_property
    def T_cam_world(self) -> Tensor:
        """[4, 4] world-to-camera on the images' device (insertion, refinement and fusion all need it)."""
        return torch.as_tensor(np.array(self.T_world_cam.inverse().matrix), dtype=self.color.dtype,
                               device=self.color.device)


@dataclass
class MappingStats:
    jobs_done: int = 0
    jobs_skipped: int = 0
    keyframes_skipped: int = 0
    inserted: int = 0
    pruned: int = 0
    densified: int = 0  # finer Gaussians added where keyframes rendered badly
    refined: int = 0  # Gaussian updates by the refinement network
    merged: int = 0  # new Gaussians folded into mapped duplicates
    pruned_transparent: int = 0  # pruned below the refinement's opacity threshold
    semantic_updates: int = 0  # Gaussian class distributions updated by an observation
    optimisations: int = 0
    last_job_ms: float = 0.0
    last_optimisation: OptimizationReport | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)  # the last job's
    stage_ms_sum: dict[str, float] = field(default_factory=dict)  # over all jobs that ran the stage
    stage_runs: dict[str, int] = field(default_factory=dict)

    def record(self, stage_ms: dict[str, float]) -> None:
        self.stage_ms = stage_ms
        for name, ms in stage_ms.items():
            self.stage_ms_sum[name] = self.stage_ms_sum.get(name, 0.0) + ms
            self.stage_runs[name] = self.stage_runs.get(name, 0) + 1

    def stage_ms_mean(self) -> dict[str, float]:
        """Mean time of each stage over the jobs that ran it (an optimisation: over keyframes)."""
        return {name: total / self.stage_runs[name] for name, total in self.stage_ms_sum.items()}


class MappingBackend:
    """Insertion, window optimisation and pruning over one :class:`GaussianMap`."""

    def __init__(self, config: MappingConfig, num_classes: int, feature_dim: int,
                 label_names: tuple[str, ...], device: str = "cpu") -> None:
        self.config = config
        self.map = GaussianMap(num_classes=num_classes, feature_dim=feature_dim, device=device,
                               label_names=label_names, capacity=8192)
        # Guards the map: the mapping thread writes it while callers render it.
        self.lock = threading.RLock()
        self.stats = MappingStats()
        self.refiner = GaussianRefiner(config.refinement, num_classes, feature_dim, device)
        self.keyframes: list[KeyframeView] = []
        self.older_keyframes = KeyframeMemory(config.optimization.stored_keyframes if
                                              config.optimization.random_keyframes else 0)
        self.refined_poses: dict[int, Pose] = {}
        self._new_refined_poses: dict[int, Pose] = {}  # not yet taken by the tracker
        #: Keyframe exposures fitted by the final refinement (keyframe id -> [6]).
        self.keyframe_exposures: dict[int, np.ndarray] = {}
        self._keyframe_count = 0
        self._pending: collections.deque[MappingJob | None] = collections.deque()
        self._busy = False
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if config.threaded:
            self._thread = threading.Thread(target=self._worker, name="gs4-mapping", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- intake

    def submit(self, job: MappingJob) -> bool:
        """Queue a job (or run it inline); False when it was skipped for lack of room."""
        self._raise_if_failed()
        if self._thread is None:
            self._handle(job)
            return True
        with self._cv:
            if len(self._pending) >= self.config.queue_size:
                if job.keyframe_id is None:
                    self.stats.jobs_skipped += 1
                    log.debug("mapping busy: skipped frame %d", job.frame_index)
                    return False
                self._evict_one_insertion()
            self._pending.append(job)
            self._bound_keyframes()
            self._cv.notify_all()
        return True

    def _evict_one_insertion(self) -> None:
        for i in range(len(self._pending) - 1, -1, -1):
            pending = self._pending[i]
            if pending is not None and pending.keyframe_id is None:
                del self._pending[i]
                self.stats.jobs_skipped += 1
                return

    def _bound_keyframes(self) -> None:
        waiting = [i for i, j in enumerate(self._pending) if j is not None and j.keyframe_id is not None]
        if len(waiting) > self.config.max_pending_keyframes:
            dropped = self._pending[waiting[0]]
            del self._pending[waiting[0]]
            self.stats.jobs_skipped += 1
            self.stats.keyframes_skipped += 1
            log.warning("mapping cannot keep up: keyframe of frame %d skipped", dropped.frame_index)

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait until every queued job is done."""
        if self._thread is not None:
            with self._cv:
                self._cv.wait_for(lambda: (not self._pending and not self._busy) or self._error is not None,
                                  timeout=timeout_s)
        self._raise_if_failed()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            with self._cv:
                self._pending.append(None)
                self._cv.notify_all()
            self._thread.join(timeout=60.0)
        self._thread = None

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("the mapping thread failed") from self._error

    def _worker(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._pending))
                job = self._pending.popleft()
                self._busy = job is not None
            if job is None:
                return
            try:
                self._handle(job)
            except BaseException as exc:  # noqa: BLE001 - surfaced to the caller by submit/flush
                log.exception("mapping job for frame %d failed", job.frame_index)
                self._error = exc
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            if self._error is not None:
                return

    # ---------------------------------------------------------------- work

    def _handle(self, job: MappingJob) -> None:
        start = time.perf_counter()
        stage: dict[str, float] = {}
        # Only this thread changes the map, so it may read it unlocked; the lock is
        # held for changes only, keeping renders and snapshots of readers responsive.
        with self.lock:
            new = self._insert(job)
        added = int(new.numel())
        stage["insert_ms"] = 1000.0 * (time.perf_counter() - start)
        labels = self._external_labels(job)
        if job.keyframe_id is not None and self.config.densify.active(labels is not None):
            t0 = time.perf_counter()
            new = torch.cat([new, self._densify(job, labels if self.config.densify.label_errors else None)])
            stage["densify_ms"] = 1000.0 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        self._refine(job, new)
        stage["refine_ms"] = 1000.0 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        self.stats.semantic_updates += self._fuse_semantics(job)
        stage["semantics_ms"] = 1000.0 * (time.perf_counter() - t0)
        if job.keyframe_id is not None:
            self._on_keyframe(job, stage)
        self.stats.jobs_done += 1
        self.stats.inserted += added
        self.stats.last_job_ms = 1000.0 * (time.perf_counter() - start)
        self.stats.record(stage)

    def _insert(self, job: MappingJob) -> Tensor:
        """Add the job's new Gaussians and return their indices (the caller holds the lock)."""
        candidates = job.prediction.to(self.map.device)
        if len(self.map) > 0:
            out = render(self.map, job.intrinsics, job.T_world_cam.inverse(), channels=("alpha", "depth"),
                         normalize_depth=True)
            keep = select_new(candidates, job.T_cam_world, job.intrinsics, out.alpha, out.depth, self.config.insertion)
            candidates = candidates.index(keep)
        room = self.config.max_gaussians - len(self.map)
        if room <= 0:
            log.warning("map is full (%d Gaussians): nothing inserted", len(self.map))
            return torch.zeros(0, dtype=torch.long, device=self.map.device)
        if len(candidates) > room:
            candidates = candidates.index(torch.arange(room))
        return self.map.add(candidates, keyframe_id=-1 if job.keyframe_id is None else job.keyframe_id)

    def _densify(self, job: MappingJob, labels: Tensor | None) -> Tensor:
        """Add finer Gaussians where the map renders the keyframe badly (colours, or classes
        against ``labels``); their indices."""
        none = torch.zeros(0, dtype=torch.long, device=self.map.device)
        room = self.config.max_gaussians - len(self.map)
        if len(self.map) == 0 or room <= 0:
            return none
        cfg = self.config.densify
        color = job.color.to(self.map.device)
        with torch.no_grad():
            channels = ("color",) + (("semantics",) if labels is not None else ())
            out = render(self.map, job.intrinsics, job.T_world_cam.inverse(), channels=channels)
            rendered_labels = out.semantics.argmax(dim=-1) if labels is not None else None
            score = block_errors(out.color.permute(2, 0, 1) if cfg.enabled else None, color, rendered_labels, labels, cfg)
            extra = densify(score, color, job.depth_m.to(self.map.device), job.intrinsics, job.T_world_cam,
                            self.map.num_classes, self.map.feature_dim, cfg)
        if len(extra) > room:
            extra = extra.index(torch.arange(room, device=extra.device))
        if len(extra) == 0:
            return none
        with self.lock:
            added = self.map.add(extra.to(self.map.device), keyframe_id=job.keyframe_id)
        self.stats.densified += len(extra)
        return added

    def _external_labels(self, job: MappingJob) -> Tensor | None:
        """The job's label image when external labels are fused, on the map's device."""
        if not self.config.semantics.uses_external or job.labels is None or self.map.num_classes == 0:
            return None
        return job.labels.to(self.map.device)

    def _refine(self, job: MappingJob, new: Tensor) -> None:
        evidence = FrameEvidence(job.color.to(self.map.device), job.depth_m.to(self.map.device), job.intrinsics,
                                 job.T_cam_world)
        with self.lock:
            report = self.refiner.refine(self.map, new, evidence)
        self.stats.refined += report.refined
        self.stats.merged += report.merged
        self.stats.pruned_transparent += report.pruned

    def _fuse_semantics(self, job: MappingJob) -> int:
        """Fuse the job's class observations (prediction and/or label image) into the Gaussians that see them."""
        cfg = self.config.semantics
        if self.map.num_classes == 0:
            return 0
        sources = []
        if cfg.uses_predicted and job.prediction.semantics is not None and len(job.prediction) > 0:
            with torch.no_grad():
                prediction = job.prediction.to(self.map.device)
                predicted = predicted_observation(prediction, job.intrinsics, job.T_cam_world)
                sources.append((predicted, cfg.predicted_weight))
        if cfg.uses_external and job.labels is not None:
            sources.append((external_observation(job.labels, self.map.num_classes, cfg.external_confidence,
                                                 self.map.device), cfg.external_weight))
        observation = combine(sources)
        if observation is None:
            return 0
        with self.lock:
            return observe(self.map, observation, job.depth_m.to(self.map.device), job.intrinsics, job.T_cam_world,
                           cfg)

    def _on_keyframe(self, job: MappingJob, stage: dict[str, float]) -> None:
        cfg = self.config.optimization
        self.keyframes.append(KeyframeView(job.keyframe_id, job.color, job.depth_m, job.intrinsics, job.T_world_cam))
        # Keyframes leaving the window go to the bounded memory (or are let go),
        # so memory stays flat however long the run.
        for view in self.keyframes[: -cfg.window]:
            self.older_keyframes.add(view)
        del self.keyframes[: -cfg.window]
        window = self.keyframes
        drawn = self.older_keyframes.draw(cfg.random_keyframes)
        t0 = time.perf_counter()
        report = optimize_window(self.map, drawn + window, cfg, fixed_poses=len(drawn) + 1)
        with self.lock:
            apply(self.map, report)
        stage["optimize_ms"] = 1000.0 * (time.perf_counter() - t0)
        if report.iterations:
            self.stats.optimisations += 1
            self.stats.last_optimisation = report
            for view in window:
                refined = report.refined_poses.get(view.keyframe_id)
                if refined is not None:
                    view.T_world_cam = refined
                    self.refined_poses[view.keyframe_id] = refined
                    with self._cv:
                        self._new_refined_poses[view.keyframe_id] = refined
        self._keyframe_count += 1
        if self.config.prune and self._keyframe_count % self.config.prune_every_keyframes == 0:
            t0 = time.perf_counter()
            with self.lock:
                self.stats.pruned += remove_floaters(self.map, window, self.config.optimization)
            stage["prune_ms"] = 1000.0 * (time.perf_counter() - t0)

    def refine_final(self, config: FinalRefinementConfig) -> FinalRefinementReport:
        """After the last frame: optimise the whole map over every stored keyframe."""
        self.flush()
        views = self.older_keyframes.draw(len(self.older_keyframes)) + self.keyframes
        with self.lock:
            report = refine_map(self.map, views, config, self.config.optimization, self.config.densify,
                                self.config.max_gaussians)
        self._take_final_poses(report.refined_poses)
        self.keyframe_exposures.update(report.exposures)
        return report

    def _take_final_poses(self, poses: dict[int, Pose]) -> None:
        """The final refinement's keyframe poses, for the stored views, the tracker and the trajectory."""
        for view in self.keyframes:
            if view.keyframe_id in poses:
                view.T_world_cam = poses[view.keyframe_id]
        for keyframe_id, pose in poses.items():
            self.older_keyframes.set_pose(keyframe_id, pose)
        self.refined_poses.update(poses)
        with self._cv:
            self._new_refined_poses.update(poses)

    # ---------------------------------------------------------------- reading

    def take_refined_poses(self) -> dict[int, Pose]:
        """Keyframe poses refined since the last call (keyframe id -> pose)."""
        with self._cv:
            taken, self._new_refined_poses = self._new_refined_poses, {}
        return taken

    def render(self, T_world_cam: Pose, intrinsics: Intrinsics, channels) -> RenderOutput:
        with self.lock, torch.no_grad():
            return render(self.map, intrinsics, T_world_cam.inverse(), channels=channels)

    def snapshot(self) -> GaussianSet:
        with self.lock:
            return self.map.as_set().detach().clone().to("cpu")

    def __len__(self) -> int:
        return len(self.map)
