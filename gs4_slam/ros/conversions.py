"""Pure conversions between ROS messages and the core's types (no node, no spinning).

Every reader raises :class:`ConversionError` naming the problem (encoding, size,
calibration, ...). Recoverable defects (NaN depth, unknown class ids) are repaired
and described in the optional ``issues`` list so that the caller can warn once.
Image payloads go through ``bytes``: assigning a numpy array to ``msg.data``
element by element costs ~70 ms for a 640x480 colour image, ``tobytes()`` ~1 ms.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose as PoseMsg
from geometry_msgs.msg import PoseStamped, TransformStamped, Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import IGNORE_LABEL, Frame
from gs4_slam.gaussians import GaussianSet
from gs4_slam.labels import LabelSet
from gs4_slam.ros.sync import stamp_ns

#: encoding -> (channels, order of the first three channels reversed)
COLOR_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}
#: encoding -> (dtype, metres per unit)
DEPTH_ENCODINGS = {"16UC1": (np.uint16, 0.001), "mono16": (np.uint16, 0.001), "32FC1": (np.float32, 1.0)}
LABEL_ENCODINGS = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}
#: PointField datatype of each numpy type used in clouds.
_POINT_FIELD_TYPES = {np.dtype(np.float32): PointField.FLOAT32, np.dtype(np.uint8): PointField.UINT8,
                      np.dtype(np.uint16): PointField.UINT16}


class ConversionError(ValueError):
    """A message cannot be converted; the message says which one and why."""


def seconds_from_stamp(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_from_seconds(t_s: float) -> Time:
    ns = round(t_s * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _pixels(msg: Image, what: str, dtype: np.dtype, channels: int) -> np.ndarray:
    """The image's pixels as an [H, W, channels] array, honouring step and byte order."""
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.width == 0 or msg.height == 0:
        raise ConversionError(f"{what} image is empty ({msg.width}x{msg.height})")
    if msg.step < row_bytes:
        raise ConversionError(f"{what} image step {msg.step} is smaller than a row ({row_bytes} bytes)")
    if len(msg.data) < msg.step * msg.height:
        raise ConversionError(
            f"{what} image has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}"
        )
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    return raw[:, :row_bytes].copy().view(dtype).reshape(msg.height, msg.width, channels)


def rgb_from_image(msg: Image) -> np.ndarray:
    """uint8 [H, W, 3] RGB from an rgb8/bgr8 (or rgba8/bgra8) image."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ConversionError(
            f"unsupported colour encoding {msg.encoding!r}; supported: {sorted(COLOR_ENCODINGS)}"
        )
    channels, reversed_order = COLOR_ENCODINGS[msg.encoding]
    pixels = _pixels(msg, "colour", np.uint8, channels)[..., :3]
    return np.ascontiguousarray(pixels[..., ::-1] if reversed_order else pixels)


def depth_from_image(msg: Image, issues: list[str] | None = None) -> np.ndarray:
    """float32 [H, W] metres from 16UC1/mono16 (mm) or 32FC1 (m); invalid values become 0."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ConversionError(f"unsupported depth encoding {msg.encoding!r}; supported: {sorted(DEPTH_ENCODINGS)}")
    dtype, metres_per_unit = DEPTH_ENCODINGS[msg.encoding]
    depth = _pixels(msg, "depth", dtype, 1)[..., 0].astype(np.float32)
    if metres_per_unit != 1.0:
        depth *= np.float32(metres_per_unit)
    invalid = ~np.isfinite(depth) | (depth < 0)
    if invalid.any():
        depth[invalid] = 0.0
        if issues is not None:
            issues.append(f"depth has {int(invalid.sum())} NaN/infinite/negative pixels, treated as no measurement")
    return depth


def labels_from_image(msg: Image, num_classes: int, issues: list[str] | None = None) -> np.ndarray:
    """uint8 [H, W] class ids from mono8/mono16; ids outside the label set become the ignore label."""
    if msg.encoding not in LABEL_ENCODINGS:
        raise ConversionError(f"unsupported label encoding {msg.encoding!r}; supported: {sorted(LABEL_ENCODINGS)}")
    ids = _pixels(msg, "label", LABEL_ENCODINGS[msg.encoding], 1)[..., 0]
    unknown = (ids >= num_classes) & (ids != IGNORE_LABEL)
    if unknown.any():
        if issues is not None:
            issues.append(f"label image has {int(unknown.sum())} pixels with class ids >= {num_classes}, ignored")
        ids = np.where(unknown, IGNORE_LABEL, ids)
    return ids.astype(np.uint8)


def intrinsics_from_camera_info(info: CameraInfo) -> Intrinsics:
    """Pinhole intrinsics (and OpenCV distortion) of a calibrated camera_info."""
    fx, fy, cx, cy = info.k[0], info.k[4], info.k[2], info.k[5]
    if info.width == 0 or info.height == 0:
        raise ConversionError(f"camera_info has no image size ({info.width}x{info.height})")
    if not (fx > 0 and fy > 0):
        raise ConversionError(f"camera_info is uncalibrated (K has fx={fx}, fy={fy})")
    if max(info.binning_x, 1) != 1 or max(info.binning_y, 1) != 1 or info.roi.width or info.roi.height:
        raise ConversionError("camera_info with binning or a region of interest is not supported")
    distortion: tuple[float, ...] = ()
    if any(d != 0.0 for d in info.d):
        if info.distortion_model not in ("plumb_bob", "rational_polynomial"):
            raise ConversionError(f"unsupported distortion model {info.distortion_model!r}")
        distortion = tuple(float(d) for d in info.d)
    return Intrinsics(info.width, info.height, float(fx), float(fy), float(cx), float(cy), distortion)


def frame_from_msgs(
    color: Image,
    depth: Image,
    info: CameraInfo | None,
    labels: Image | None = None,
    *,
    index: int = 0,
    num_classes: int = IGNORE_LABEL,
    T_world_cam: Pose | None = None,
    issues: list[str] | None = None,
) -> Frame:
    """A core Frame from synchronised colour, depth (registered to colour) and camera_info.

    The frame carries the depth image's time, and the colour image's stamp minus it as
    ``color_delay_s`` (zero for a synchronised camera), which the tracker compensates
    like the datasets' (``tracking.compensate_color_delay``). ``T_world_cam`` (an
    external pose, if any) is carried as the frame's reference pose.
    """
    if info is None:
        raise ConversionError("no camera_info received yet")
    rgb = rgb_from_image(color)
    depth_m = depth_from_image(depth, issues)
    if depth_m.shape != rgb.shape[:2]:
        raise ConversionError(
            f"size mismatch: colour is {rgb.shape[1]}x{rgb.shape[0]}, depth is {depth_m.shape[1]}x{depth_m.shape[0]}"
            " (depth must be registered to colour)"
        )
    intrinsics = intrinsics_from_camera_info(info)
    if (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
        raise ConversionError(
            f"size mismatch: camera_info is {intrinsics.width}x{intrinsics.height}, "
            f"colour is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    label_ids = None
    if labels is not None:
        label_ids = labels_from_image(labels, num_classes, issues)
        if label_ids.shape != rgb.shape[:2]:
            raise ConversionError(
                f"size mismatch: labels are {label_ids.shape[1]}x{label_ids.shape[0]}, "
                f"colour is {rgb.shape[1]}x{rgb.shape[0]}"
            )
    return Frame(
        timestamp_s=seconds_from_stamp(depth.header.stamp),
        color_rgb=rgb,
        depth_m=depth_m,
        intrinsics=intrinsics,
        T_world_cam_gt=T_world_cam,
        labels=label_ids,
        index=index,
        color_delay_s=color_delay_s(color, depth),
    )


def color_delay_s(color: Image, depth: Image) -> float:
    """How much later the colour image was stamped than the depth image (seconds)."""
    return (stamp_ns(color) - stamp_ns(depth)) * 1e-9  # integer nanoseconds: float seconds lose some


def pose_from_pose_msg(msg: PoseMsg) -> Pose:
    p, q = msg.position, msg.orientation
    quat = np.array([q.x, q.y, q.z, q.w])
    if not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-6:
        raise ConversionError(f"pose orientation is not a valid quaternion: {quat.tolist()}")
    return Pose.from_quat_xyzw(np.array([p.x, p.y, p.z]), quat)


def pose_msg_from_pose(pose: Pose) -> PoseMsg:
    msg = PoseMsg()
    t, q = pose.translation, pose.quat_xyzw()
    msg.position.x, msg.position.y, msg.position.z = (float(v) for v in t)
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in q)
    return msg


def pose_stamped_from_pose(pose: Pose, frame_id: str, stamp: Time) -> PoseStamped:
    return PoseStamped(header=Header(frame_id=frame_id, stamp=stamp), pose=pose_msg_from_pose(pose))


def odometry_from_pose(
    pose: Pose, frame_id: str, child_frame_id: str, stamp: Time, previous: tuple[float, Pose] | None = None
) -> Odometry:
    """Odometry at ``pose``; the twist (in the child frame) is the finite difference
    from ``previous`` = (timestamp_s, pose) when given."""
    msg = Odometry(header=Header(frame_id=frame_id, stamp=stamp), child_frame_id=child_frame_id)
    msg.pose.pose = pose_msg_from_pose(pose)
    if previous is not None:
        dt = seconds_from_stamp(stamp) - previous[0]
        if dt > 0:
            msg.twist.twist = _twist_between(previous[1], pose, dt)
    return msg


def _twist_between(T_world_a: Pose, T_world_b: Pose, dt: float) -> Twist:
    from scipy.spatial.transform import Rotation

    T_a_b = T_world_a.inverse() @ T_world_b
    linear = T_world_b.rotation.T @ (T_world_b.translation - T_world_a.translation) / dt
    angular = Rotation.from_matrix(T_a_b.rotation).as_rotvec() / dt
    twist = Twist()
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in linear)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in angular)
    return twist


def transform_stamped_from_pose(pose: Pose, parent_frame: str, child_frame: str, stamp: Time) -> TransformStamped:
    msg = TransformStamped(header=Header(frame_id=parent_frame, stamp=stamp), child_frame_id=child_frame)
    t, q = pose.translation, pose.quat_xyzw()
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def image_msg_from_rgb(rgb: np.ndarray, frame_id: str, stamp: Time) -> Image:
    """rgb8 image from uint8 [H, W, 3], or from floats in [0, 1]."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"colour must be [H, W, 3], got shape {list(rgb.shape)}")
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    return Image(header=Header(frame_id=frame_id, stamp=stamp), height=h, width=w, encoding="rgb8",
                 step=3 * w, data=np.ascontiguousarray(rgb).tobytes())


def image_msg_from_depth(depth_m: np.ndarray, frame_id: str, stamp: Time, encoding: str = "32FC1") -> Image:
    """Depth image from float metres [H, W]: 32FC1 in metres or 16UC1 in millimetres (0 = no depth)."""
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ConversionError(f"depth must be [H, W], got shape {list(depth_m.shape)}")
    if encoding == "32FC1":
        pixels = np.ascontiguousarray(depth_m, dtype="<f4")
    elif encoding == "16UC1":
        pixels = np.clip(np.nan_to_num(depth_m) * 1000.0 + 0.5, 0, 65535).astype("<u2")
    else:
        raise ConversionError(f"cannot write depth as {encoding!r}; use 32FC1 or 16UC1")
    h, w = depth_m.shape
    return Image(header=Header(frame_id=frame_id, stamp=stamp), height=h, width=w, encoding=encoding,
                 step=pixels.itemsize * w, data=pixels.tobytes())


def image_msg_from_label_ids(labels: np.ndarray, frame_id: str, stamp: Time) -> Image:
    """mono8 image of class ids [H, W] (what a segmenter publishes)."""
    ids = np.ascontiguousarray(labels, dtype=np.uint8)
    h, w = ids.shape
    return Image(header=Header(frame_id=frame_id, stamp=stamp), height=h, width=w, encoding="mono8",
                 step=w, data=ids.tobytes())


def camera_info_from_intrinsics(intrinsics: Intrinsics, frame_id: str, stamp: Time) -> CameraInfo:
    k = intrinsics
    info = CameraInfo(header=Header(frame_id=frame_id, stamp=stamp), width=k.width, height=k.height)
    info.distortion_model = "plumb_bob"
    info.d = list(k.distortion) or [0.0] * 5
    info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def image_msg_from_labels(labels: np.ndarray, label_set: LabelSet, frame_id: str, stamp: Time) -> Image:
    """rgb8 image of class ids [H, W] in the label set's colours (ignore = black)."""
    return image_msg_from_rgb(label_set.colorize(labels), frame_id, stamp)


def image_msg_from_class_scores(scores: np.ndarray, label_set: LabelSet, frame_id: str, stamp: Time,
                                min_score: float = 1e-6) -> Image:
    """Colourised argmax of [H, W, C] class scores; pixels without evidence are black."""
    if scores.ndim != 3:
        raise ConversionError(f"class scores must be [H, W, C], got shape {list(scores.shape)}")
    labels = np.argmax(scores, axis=2).astype(np.uint8)
    labels[np.max(scores, axis=2) < min_score] = IGNORE_LABEL
    return image_msg_from_labels(labels, label_set, frame_id, stamp)


def _cloud_dtype(label_dtype: type) -> np.dtype:
    names = ["x", "y", "z", "rgb", "confidence", "scale_x", "scale_y", "scale_z",
             "rot_w", "rot_x", "rot_y", "rot_z", "opacity", "label"]
    return np.dtype({"names": names, "formats": [np.float32] * 13 + [label_dtype]}, align=True)


def pointcloud2_from_gaussians(
    gaussians: GaussianSet, label_set: LabelSet, frame_id: str, stamp: Time, max_points: int = 0
) -> PointCloud2:
    """An unorganised cloud with one point per Gaussian.

    Fields: x, y, z; rgb (packed like PCL: 0x00RRGGBB as float32); confidence (max class
    score, 0 without semantics); scale_x/y/z (standard deviations, m); rot_w/x/y/z
    (unit quaternion); opacity; label (class id, ignore label without semantics; uint8,
    uint16 for sets with 255 classes or more). ``max_points`` > 0 keeps an even subset.
    """
    n_all = len(gaussians)
    keep = slice(None) if max_points <= 0 or n_all <= max_points else np.linspace(0, n_all - 1, max_points).astype(int)
    g = gaussians.detach().to("cpu")
    means = g.means.numpy()[keep]
    label_dtype = np.uint8 if label_set.num_classes < IGNORE_LABEL else np.uint16
    points = np.zeros(len(means), dtype=_cloud_dtype(label_dtype))
    points["x"], points["y"], points["z"] = means.T
    rgb8 = (g.colors_rgb().clamp(0.0, 1.0).numpy()[keep] * 255.0 + 0.5).astype(np.uint32)
    points["rgb"] = ((rgb8[:, 0] << 16) | (rgb8[:, 1] << 8) | rgb8[:, 2]).view(np.float32)
    scales, quats = g.scales().numpy()[keep], g.quats.numpy()[keep]
    for i, axis in enumerate("xyz"):
        points[f"scale_{axis}"] = scales[:, i]
    for i, part in enumerate("wxyz"):
        points[f"rot_{part}"] = quats[:, i]
    points["opacity"] = g.opacities().numpy()[keep]
    if g.semantics is not None and g.semantics.shape[1] > 0:
        scores = g.semantics.float().numpy()[keep]
        points["label"] = np.argmax(scores, axis=1)
        points["confidence"] = np.max(scores, axis=1)
    else:
        points["label"] = IGNORE_LABEL
    fields = [
        PointField(name=name, offset=offset, datatype=_POINT_FIELD_TYPES[np.dtype(dtype)], count=1)
        for name, (dtype, offset) in points.dtype.fields.items()
    ]
    return PointCloud2(
        header=Header(frame_id=frame_id, stamp=stamp), height=1, width=len(points), fields=fields,
        is_bigendian=False, point_step=points.dtype.itemsize, row_step=points.nbytes, is_dense=True,
        data=points.tobytes(),
    )


def structured_from_pointcloud2(msg: PointCloud2) -> np.ndarray:
    """The cloud's points as a numpy structured array (for tests and tools)."""
    types = {v: k for k, v in _POINT_FIELD_TYPES.items()}
    dtype = np.dtype({
        "names": [f.name for f in msg.fields],
        "formats": [types[f.datatype] for f in msg.fields],
        "offsets": [f.offset for f in msg.fields],
        "itemsize": msg.point_step,
    })
    return np.frombuffer(msg.data, dtype=dtype, count=msg.width * msg.height)
