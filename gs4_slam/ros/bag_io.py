"""rosbag2 bags as RGB-D sequences, and writing live topics into bags (through ``rosbags``).

``rosbag2_py`` exists only on a ROS 2 distribution; ``rosbags`` is pure Python,
reads and writes sqlite3 and mcap bags with the type hashes ROS expects, and hands
out each message's CDR bytes, which rclpy deserialises into its own message types
so that :mod:`gs4_slam.ros.conversions` reads bag frames exactly as the SLAM node
reads live ones.

A bag's topics are recognised by how their names end (RealSense names, with any
namespace in front): ``color/image_raw``, ``aligned_depth_to_color/image_raw``,
``color/camera_info``, and optionally ``labels/image_raw`` and ``ground_truth/pose``.
Frames are the colour images; the other messages are associated by header stamp
(the nearest within 20 ms). A frame carries its depth image's time, and the colour
image's stamp minus it as its colour delay.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.datasets.base import DatasetError, ReaderOptions, resize_color, resize_nearest
from gs4_slam.frame import Frame
from gs4_slam.labels import load_label_set
from gs4_slam.ros import conversions as conv

log = logging.getLogger(__name__)

#: role -> (topic name ending, ROS type, required)
ROLES: dict[str, tuple[str, str, bool]] = {
    "color": ("color/image_raw", "sensor_msgs/msg/Image", True),
    "depth": ("aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", True),
    "info": ("color/camera_info", "sensor_msgs/msg/CameraInfo", True),
    "labels": ("labels/image_raw", "sensor_msgs/msg/Image", False),
    "ground_truth": ("ground_truth/pose", "geometry_msgs/msg/PoseStamped", False),
}
_MSG_CLASSES = {"color": Image, "depth": Image, "info": CameraInfo, "labels": Image, "ground_truth": PoseStamped}
#: Largest stamp difference between a colour image and the messages associated with it.
MAX_STAMP_DIFF_NS = 20_000_000
#: Bag format versions rosbags writes: 8 is read by Iron and newer, 9 by Jazzy and newer.
BAG_VERSIONS = (8, 9)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def header_stamp_ns(cdr: bytes) -> int:
    """``header.stamp`` of a serialised message whose first field is a std_msgs/Header.

    The stamp is the first thing after the 4-byte encapsulation header, so indexing a
    bag needs no deserialisation.
    """
    little_endian = cdr[1] == 1
    sec, nanosec = struct.unpack_from("<iI" if little_endian else ">iI", cdr, 4)
    return sec * 1_000_000_000 + nanosec


def match_topics(topics: dict[str, str]) -> dict[str, str]:
    """{role: topic} from a bag's {topic: type}; a DatasetError when a required role is missing or ambiguous."""
    found: dict[str, str] = {}
    for role, (suffix, msgtype, required) in ROLES.items():
        candidates = sorted(t for t, typ in topics.items()
                            if typ == msgtype and (t == suffix or t.endswith("/" + suffix)))
        if len(candidates) > 1:
            raise DatasetError(f"several topics could be the {role} ({suffix}): {candidates}")
        if candidates:
            found[role] = candidates[0]
        elif required:
            raise DatasetError(f"no {msgtype} topic ending in {suffix!r} in the bag (topics: {sorted(topics)})")
    return found


@dataclass(frozen=True)
class _Message:
    stamp_ns: int
    bag_time_ns: int


def _nearest(stamps_ns: np.ndarray, t_ns: int) -> int | None:
    """Index of the stamp nearest to ``t_ns`` within MAX_STAMP_DIFF_NS, else None."""
    if len(stamps_ns) == 0:
        return None
    i = int(np.searchsorted(stamps_ns, t_ns))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps_ns)), key=lambda j: abs(int(stamps_ns[j]) - t_ns))
    return best if abs(int(stamps_ns[best]) - t_ns) <= MAX_STAMP_DIFF_NS else None


class BagFrameReader:
    """Frames of a rosbag2 bag, read one at a time (like the dataset readers).

    Opening reads the bag once to index message stamps (and the small camera_info
    and ground-truth messages); images are read when a frame is asked for. Honours
    ``stride``, ``start``, ``limit`` and ``resize`` of the reader options.
    """

    kind = "bag"

    def __init__(self, path: str | Path, options: ReaderOptions | None = None, label_set: str = "scannet20") -> None:
        self.root = Path(path)
        self.options = options or ReaderOptions()
        if not self.root.exists():
            raise DatasetError(f"{self.root}: bag not found")
        self.name = f"bag:{self.root.name}"
        self._num_classes = load_label_set(label_set).num_classes
        try:
            self._reader = Reader(self.root)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises its own error types for bad bags
            raise DatasetError(f"{self.root}: not a readable rosbag2 bag: {exc}") from exc
        self._connections = {c.topic: c for c in self._reader.connections}
        self.topics = match_topics({c.topic: c.msgtype for c in self._reader.connections})
        self._index: dict[str, list[_Message]] = {role: [] for role in self.topics}
        self._infos: list[CameraInfo] = []
        self._gt: list[Pose] = []
        self._scan()
        self._color = self._index["color"]
        self._stamps = {role: np.array([m.stamp_ns for m in msgs], dtype=np.int64)
                        for role, msgs in self._index.items()}
        self._selection = self.options.selected(len(self._color))
        if not self._infos:
            raise DatasetError(f"{self.root}: no camera_info message on {self.topics['info']}")
        native = conv.intrinsics_from_camera_info(self._infos[0])
        self.intrinsics: Intrinsics = native.scaled(*self.options.resize) if self.options.resize else native

    def _scan(self) -> None:
        role_of = {topic: role for role, topic in self.topics.items()}
        wanted = [self._connections[t] for t in self.topics.values()]
        for connection, bag_time_ns, raw in self._reader.messages(connections=wanted):
            role = role_of[connection.topic]
            self._index[role].append(_Message(header_stamp_ns(raw), bag_time_ns))
            if role == "info":
                self._infos.append(deserialize_message(raw, CameraInfo))
            elif role == "ground_truth":
                self._gt.append(conv.pose_from_pose_msg(deserialize_message(raw, PoseStamped).pose))
        for role, messages in self._index.items():
            order = sorted(range(len(messages)), key=lambda i: messages[i].stamp_ns)
            self._index[role] = [messages[i] for i in order]
            if role == "info":
                self._infos = [self._infos[i] for i in order]
            elif role == "ground_truth":
                self._gt = [self._gt[i] for i in order]
        if not self._index["color"]:
            raise DatasetError(f"{self.root}: no colour images on {self.topics['color']}")

    def __len__(self) -> int:
        return len(self._selection)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def timestamps_s(self) -> np.ndarray:
        return np.array([self._frame_stamp_ns(i) * 1e-9 for i in self._selection], dtype=np.float64)

    def gt_poses(self) -> list[Pose | None]:
        return [self._ground_truth(self._frame_stamp_ns(i)) for i in self._selection]

    def _frame_stamp_ns(self, i: int) -> int:
        """A frame's time: its depth image's stamp (conversions.frame_from_msgs), the colour's if it has none."""
        depth = self._associated("depth", self._color[i].stamp_ns)
        return self._color[i].stamp_ns if depth is None else depth.stamp_ns

    def _ground_truth(self, t_ns: int) -> Pose | None:
        if "ground_truth" not in self._stamps:
            return None
        j = _nearest(self._stamps["ground_truth"], t_ns)
        return None if j is None else self._gt[j]

    def _associated(self, role: str, t_ns: int) -> _Message | None:
        if role not in self._stamps:
            return None
        j = _nearest(self._stamps[role], t_ns)
        return None if j is None else self._index[role][j]

    def __getitem__(self, k: int) -> Frame:
        i = self._selection[k]
        color = self._color[i]
        parts = {"color": color}
        for role in ("depth", "info", "labels"):
            message = self._associated(role, color.stamp_ns)
            if message is not None:
                parts[role] = message
        for role in ("depth", "info"):
            if role not in parts:
                raise DatasetError(f"{self.root}: no {role} message within {MAX_STAMP_DIFF_NS * 1e-6:.0f} ms of "
                                   f"the colour image at t={color.stamp_ns * 1e-9:.6f} s")
        msgs = self._read(parts)
        frame = conv.frame_from_msgs(msgs["color"], msgs["depth"], msgs["info"], msgs.get("labels"), index=i,
                                     num_classes=self._num_classes,
                                     T_world_cam=self._ground_truth(parts["depth"].stamp_ns))
        return self._resized(frame)

    def _read(self, parts: dict[str, _Message]) -> dict:
        """The messages ``parts`` names, read in one pass over their bag-time window."""
        wanted = {(self.topics[role], m.bag_time_ns, m.stamp_ns): role for role, m in parts.items()}
        times = [m.bag_time_ns for m in parts.values()]
        connections = [self._connections[self.topics[role]] for role in parts]
        out = {}
        for connection, bag_time_ns, raw in self._reader.messages(connections=connections, start=min(times),
                                                                  stop=max(times) + 1):
            role = wanted.get((connection.topic, bag_time_ns, header_stamp_ns(raw)))
            if role is not None and role not in out:
                out[role] = deserialize_message(raw, _MSG_CLASSES[role])
        return out

    def _resized(self, frame: Frame) -> Frame:
        if self.options.resize is None:
            return frame
        width, height = self.options.resize
        labels = None if frame.labels is None else resize_nearest(frame.labels, width, height)
        return Frame(frame.timestamp_s, resize_color(frame.color_rgb, width, height),
                     resize_nearest(frame.depth_m, width, height), frame.intrinsics.scaled(width, height),
                     frame.T_world_cam_gt, labels, frame.index, frame.color_delay_s)

    def close(self) -> None:
        self._reader.close()

    def __repr__(self) -> str:
        return f"<BagFrameReader {self.root} frames={len(self)} topics={self.topics}>"


class BagWriter:
    """Serialised messages into a new rosbag2 bag; one connection per topic."""

    def __init__(self, path: str | Path, storage: str = "sqlite3", version: int = 8) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if version not in BAG_VERSIONS:
            raise ValueError(f"bag version must be one of {BAG_VERSIONS}, got {version}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists; rosbag2 writes a new folder")
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def knows(self, msgtype: str) -> bool:
        """Whether the type's definition is known, which writing it needs (for its type hash)."""
        return msgtype in self._typestore.fielddefs

    def add_topic(self, topic: str, msgtype: str) -> None:
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, cdr: bytes) -> None:
        self._writer.write(self._connections[topic], timestamp_ns, cdr)
        self.counts[topic] += 1

    def close(self) -> None:
        self._writer.close()
