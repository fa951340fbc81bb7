"""ROS parameters of the SLAM node, declared from the configuration dataclasses.

Every leaf field of :class:`~gs4_slam.slam.SlamConfig` becomes a read-only parameter
with its dotted name (``tracking.keyframes.translation_m``), its description (see
``field_docs``), a range where one makes sense and a default taken from the
dataclass overlaid by the YAML config file (``config_file``). The values that arrive
(``--params-file``, ``-p``) go back through the strict config loader, so an invalid
value is refused with a message naming the parameter. :class:`NodeConfig` holds
the node's own settings (frames, rates, queues, output folder, virtual camera).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from gs4_slam import config as config_io
from gs4_slam.ros.field_docs import field_descriptions, yaml_comments


class ParameterError(config_io.ConfigError):
    """A parameter value is invalid; the message names the parameter."""


@dataclass(frozen=True)
class VirtualCameraConfig:
    enabled: bool = False  # render from this fixed pose instead of the current camera pose
    position: tuple[float, ...] = (0.0, 0.0, 0.0)  # camera centre in the map frame (m)
    orientation_xyzw: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0)  # camera-to-map rotation (x, y, z, w)

    def __post_init__(self) -> None:
        if len(self.position) != 3:
            raise ValueError(f"virtual_camera.position needs 3 values, got {len(self.position)}")
        if len(self.orientation_xyzw) != 4 or sum(q * q for q in self.orientation_xyzw) < 1e-12:
            raise ValueError(f"virtual_camera.orientation_xyzw needs 4 values, not all 0, got {self.orientation_xyzw}")


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the node itself (the pipeline's are SlamConfig's)."""

    config_file: str = ""  # SLAM YAML the other parameters' defaults come from ("": the installed config/slam.yaml)
    map_frame: str = "map"  # fixed frame of poses, path, TF parent, cloud
    camera_frame: str = ""  # TF child / odometry child frame ("": the colour image's header.frame_id)
    publish_tf: bool = True  # broadcast map -> camera (needs tf2_ros)
    input_reliable: bool = True  # reliable input subscriptions (false: best effort, which also accepts any publisher)
    use_labels: bool = False  # also synchronise a label image (mono8/mono16 class ids of the label set)
    use_external_pose: bool = False  # attach the nearest external_pose (PoseStamped, map frame) to each frame
    external_pose_max_age_s: float = 0.05  # an external pose farther in time than this is not used
    queue_size: int = 1  # frames waiting for the pipeline; on overflow the oldest is dropped and counted (1: freshest)
    sync_queue_size: int = 10  # messages per input kept by the synchroniser
    input_depth: int = 10  # DDS history per input: messages held while the executor is busy (beyond: oldest lost)
    sync_slop_s: float = 0.02  # largest stamp difference within a synchronised set
    map_cloud_rate_hz: float = 0.5  # ~/map_cloud publish rate (0: off)
    map_cloud_max_points: int = 200_000  # larger maps are evenly subsampled in the cloud (0: all)
    render_rate_hz: float = 1.0  # ~/render/* publish rate (0: off)
    render_width: int = 0  # size of the renders (0: the working resolution)
    render_height: int = 0
    status_rate_hz: float = 2.0  # ~/status and diagnostics rate
    path_rate_hz: float = 2.0  # ~/path publish rate (each pose is also on ~/pose and ~/odometry)
    path_max_poses: int = 5_000  # ~/path keeps the most recent poses only (bounded memory and time)
    output_dir: str = "output/ros"  # save_map/load_map paths are confined to this folder
    service_timeout_s: float = 120.0  # longest wait of a service for the pipeline
    virtual_camera: VirtualCameraConfig = field(default_factory=VirtualCameraConfig)

    def __post_init__(self) -> None:
        if (self.render_width == 0) != (self.render_height == 0):
            raise ValueError("render_width and render_height must both be 0 or both be set")
        if not self.map_frame:
            raise ValueError("map_frame must not be empty")


#: Node parameters that may change while running; everything else is read-only.
DYNAMIC_NODE_PARAMETERS = frozenset({
    "publish_tf", "map_cloud_rate_hz", "map_cloud_max_points", "render_rate_hz", "render_width", "render_height",
    "path_rate_hz",
    "virtual_camera.enabled", "virtual_camera.position", "virtual_camera.orientation_xyzw",
})

#: (from, to, step) of parameters with a natural range; step 0 = continuous.
RANGES: dict[str, tuple[float, float, float]] = {
    "working_width": (16, 4096, 16),
    "working_height": (16, 4096, 16),
    "tracking.solver.levels": (1, 8, 1),
    "tracking.solver.finest_stride": (1, 16, 1),
    "tracking.keyframes.translation_m": (0.0, 10.0, 0),
    "tracking.keyframes.rotation_rad": (0.0, 3.15, 0),
    "tracking.keyframes.min_overlap": (0.0, 1.0, 0),
    "tracking.quality.lost_min_valid_ratio": (0.0, 1.0, 0),
    "tracking.quality.weak_min_valid_ratio": (0.0, 1.0, 0),
    "tracking.relocalization.min_valid_ratio": (0.0, 1.0, 0),
    "tracking.min_valid_depth_ratio": (0.0, 1.0, 0),
    "predictor.stride": (4, 16, 4),
    "mapping.queue_size": (1, 1000, 1),
    "mapping.integrate_every": (0, 10_000, 1),
    "mapping.insertion.alpha_threshold": (0.0, 1.0, 0),
    "mapping.optimization.iterations": (0, 50, 1),
    "mapping.optimization.min_opacity": (0.0, 1.0, 0),
    "external_pose_max_age_s": (0.0, 10.0, 0),
    "queue_size": (1, 1000, 1),
    "sync_queue_size": (1, 1000, 1),
    "input_depth": (1, 1000, 1),
    "sync_slop_s": (0.0, 1.0, 0),
    "map_cloud_rate_hz": (0.0, 100.0, 0),
    "map_cloud_max_points": (0, 100_000_000, 1),
    "render_rate_hz": (0.0, 100.0, 0),
    "render_width": (0, 8192, 1),
    "render_height": (0, 8192, 1),
    "status_rate_hz": (0.01, 100.0, 0),
    "path_rate_hz": (0.1, 100.0, 0),
    "path_max_poses": (1, 1_000_000, 1),
    "service_timeout_s": (1.0, 3600.0, 0),
}

#: Descriptions of fields whose dataclass does not document them.
_ARRAY_TYPES = {int: Parameter.Type.INTEGER_ARRAY, float: Parameter.Type.DOUBLE_ARRAY,
                str: Parameter.Type.STRING_ARRAY, bool: Parameter.Type.BOOL_ARRAY}
_SCALAR_TYPES = {int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE, str: Parameter.Type.STRING,
                 bool: Parameter.Type.BOOL}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, typed default, descriptor contents."""

    name: str
    default: Any
    type: Parameter.Type
    description: str
    read_only: bool = True
    range: tuple[float, float, float] | None = None
    constraints: str = ""

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                read_only=self.read_only, additional_constraints=self.constraints)
        if self.range is not None and self.type == Parameter.Type.INTEGER:
            d.integer_range = [IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]),
                                            step=int(self.range[2]))]
        elif self.range is not None and self.type == Parameter.Type.DOUBLE:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.range[0]),
                                                         to_value=float(self.range[1]), step=float(self.range[2]))]
        return d


def _ros_type(hint: Any, name: str) -> tuple[Parameter.Type, str]:
    """ROS parameter type of a field's type hint, and a constraint text for Literals."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return _SCALAR_TYPES[type(args[0])], f"one of {list(args)}"
    if origin in (tuple, list) and args and args[0] in _ARRAY_TYPES:
        return _ARRAY_TYPES[args[0]], ""
    if hint in _SCALAR_TYPES:
        return _SCALAR_TYPES[hint], ""
    raise TypeError(f"config field {name} has type {hint}, which has no ROS parameter type")


def _ros_value(value: Any, ptype: Parameter.Type) -> Any:
    if ptype == Parameter.Type.DOUBLE:
        return float(value)
    if ptype == Parameter.Type.DOUBLE_ARRAY:
        return [float(v) for v in value]
    if isinstance(value, tuple):
        return list(value)
    return value


def specs_from_config(config: Any, descriptions: dict[str, str], read_only: bool | frozenset = True) -> list[ParamSpec]:
    """A spec per leaf field of the dataclass instance ``config`` (its values are the defaults).

    ``read_only`` is a bool for all fields, or the set of names that may change at run time.
    """
    flat = config_io.flatten(config_io.to_dict(config))
    hints = _leaf_hints(type(config))
    specs = []
    for name, value in flat.items():
        ptype, constraints = _ros_type(hints[name], name)
        fixed = read_only if isinstance(read_only, bool) else name not in read_only
        description = descriptions.get(name) or name.replace("_", " ")
        specs.append(ParamSpec(name, _ros_value(value, ptype), ptype, description, fixed, RANGES.get(name),
                               constraints))
    return specs


def _leaf_hints(cls: type, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            out.update(_leaf_hints(hint, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = hint
    return out


def node_specs() -> list[ParamSpec]:
    return specs_from_config(NodeConfig(), field_descriptions(NodeConfig), read_only=DYNAMIC_NODE_PARAMETERS)


def slam_specs(config_file: str | Path | None = None) -> list[ParamSpec]:
    """Specs of every SlamConfig field; defaults from ``config_file`` (None: the installed one)."""
    from gs4_slam.slam import SlamConfig, default_config_path, load_slam_config

    path = Path(config_file) if config_file else default_config_path()
    defaults = load_slam_config(path)
    return specs_from_config(defaults, field_descriptions(SlamConfig, yaml_comments(path)))


def declare(node: Any, specs: list[ParamSpec]) -> None:
    """Declare ``specs`` on ``node``; overrides given to the node are checked against type and range."""
    for spec in specs:
        default = spec.default
        if isinstance(default, list) and not default:
            default = spec.type  # an empty list says nothing about the element type
        try:
            node.declare_parameter(spec.name, default, spec.descriptor())
        except InvalidParameterTypeException as exc:
            raise ParameterError(
                f"invalid parameter {spec.name!r}: expected {spec.type.name} (default {spec.default!r}); {exc}"
            ) from None
        except InvalidParameterValueException as exc:
            raise ParameterError(f"invalid parameter {spec.name!r}: {exc}") from None


def values(node: Any, specs: list[ParamSpec]) -> dict[str, Any]:
    """The current values of ``specs`` as plain Python (flat, dotted names)."""
    out = {}
    for spec in specs:
        value = node.get_parameter(spec.name).value
        out[spec.name] = spec.default if value is None else (list(value) if spec.type.name.endswith("ARRAY") else value)
    return out


def build(cls: type, specs: list[ParamSpec], flat: dict[str, Any]) -> Any:
    """``cls`` from flat parameter values through the strict loader; errors name the parameters."""
    try:
        return config_io.from_dict(cls, config_io.unflatten(flat))
    except config_io.ConfigError as exc:
        changed = [f"{s.name}={flat[s.name]!r}" for s in specs if s.name in flat and flat[s.name] != s.default]
        hint = f" (parameters changed from their defaults: {', '.join(changed)})" if changed else ""
        raise ParameterError(f"invalid parameter value: {exc}{hint}") from None


def unknown_overrides(node: Any) -> list[str]:
    """Names given to the node (params file, -p) that it does not declare: typos, usually."""
    given = getattr(node, "_parameter_overrides", {})  # rclpy has no public accessor
    return sorted(name for name in given if not node.has_parameter(name))
