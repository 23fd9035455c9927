"""rosbag2 I/O for sensor_msgs/Image topics with the ``rosbags`` library (no ROS install needed).

Bags are real rosbag2 bags (a folder with metadata.yaml and .mcap or .db3 files, version 9):
their CDR bytes equal rclpy's ``serialize_message`` except for alignment padding, zero here and
left uninitialised by rclpy. Messages are built and parsed with the rosbags ROS 2 Jazzy
typestore; the storage (mcap or sqlite3) is read from the bag itself.
"""
from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import apsw
import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from jointperception.errors import DataFormatError, InputError
from jointperception.ros.convert import EncodedImage, encode_image

IMAGE_TYPE = "sensor_msgs/msg/Image"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2 metadata version written by Jazzy
# What rosbags and its sqlite driver raise on damaged files (found by flipping bytes of real bags):
# corrupt lengths surface as OverflowError / MemoryError, bad strings as UnicodeDecodeError.
_CORRUPT = (ReaderError, SerdeError, apsw.Error, OSError, ValueError, OverflowError, MemoryError, struct.error)


@cache
def typestore() -> Typestore:
    """The ROS 2 Jazzy message types (built once, on first use, from rosbags' definitions)."""
    return get_typestore(Stores.ROS2_JAZZY)


class ImageRecord(NamedTuple):
    """One sensor_msgs/Image: header stamp (ns) and frame_id, then the data fields.

    data: (step * height,) uint8 array; decode with ``jointperception.ros.convert.decode_image``.
    """

    stamp_ns: int
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: np.ndarray


def _open_reader(bag_path: Path) -> Reader:
    """An open Reader; DataFormatError naming the bag when it is missing or unreadable."""
    if not bag_path.exists():
        raise DataFormatError(f"{bag_path}: rosbag2 bag not found")
    try:
        reader = Reader(bag_path)
        reader.open()
    except _CORRUPT as exc:
        raise DataFormatError(f"{bag_path}: not a readable rosbag2 bag ({exc})") from exc
    return reader


class TopicInfo(NamedTuple):
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    count: int  # messages, as the bag's metadata states


def bag_topics(bag_path: str | Path) -> dict[str, TopicInfo]:
    """Topic name -> TopicInfo of every topic in the bag (mcap or sqlite3)."""
    reader = _open_reader(Path(bag_path))
    try:
        return _topics(reader)
    finally:
        reader.close()


def _topics(reader: Reader) -> dict[str, TopicInfo]:
    return {topic: TopicInfo(info.msgtype or "?", info.msgcount) for topic, info in reader.topics.items()}


def _check_image_topics(bag_path: Path, available: dict[str, TopicInfo], topics: Sequence[str]) -> None:
    listing = ", ".join(f"{name} [{info.msgtype}]" for name, info in sorted(available.items())) or "none"
    for topic in topics:
        if topic not in available:
            raise DataFormatError(f"{bag_path}: no topic {topic!r} in the bag; topics: {listing}")
        if available[topic].msgtype != IMAGE_TYPE:
            raise DataFormatError(f"{bag_path}: topic {topic!r} holds {available[topic].msgtype}, not {IMAGE_TYPE}")


def require_image_topics(bag_path: str | Path, topics: Sequence[str]) -> dict[str, TopicInfo]:
    """``bag_topics``, after checking that each of ``topics`` is a sensor_msgs/Image topic of the
    bag (else DataFormatError naming the bag and topic, listing the bag's topics)."""
    available = bag_topics(bag_path)
    _check_image_topics(Path(bag_path), available, topics)
    return available


def _record(raw: bytes | memoryview) -> ImageRecord:
    msg = typestore().deserialize_cdr(raw, IMAGE_TYPE)
    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return ImageRecord(stamp_ns, msg.header.frame_id, msg.encoding, msg.height, msg.width, msg.step,
                       msg.is_bigendian, msg.data)


def read_image_topics(bag_path: str | Path, topics: Sequence[str]) -> Iterator[tuple[str, int, ImageRecord]]:
    """(topic, log time ns, ImageRecord) for every message of ``topics``, in log-time order (the
    order a recorder received them; header stamps may differ, e.g. go back when a source loops).

    Raises (on first use) DataFormatError naming the bag for a missing or corrupt bag or message,
    or when fewer messages than the metadata lists could be read (after the last one), and as
    ``require_image_topics`` for a topic that is absent or not sensor_msgs/Image.
    """
    bag_path = Path(bag_path)
    reader = _open_reader(bag_path)
    try:
        available = _topics(reader)
        _check_image_topics(bag_path, available, topics)
        connections = [c for c in reader.connections if c.topic in topics]
        if not connections:  # an empty filter would mean "every topic" to rosbags
            return
        read: Counter[str] = Counter()
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                read[connection.topic] += 1
                yield connection.topic, log_time, _record(raw)
        except _CORRUPT as exc:
            raise DataFormatError(f"{bag_path}: corrupt bag data ({type(exc).__name__}: {exc})") from exc
        for topic in topics:
            if read[topic] != available[topic].count:
                raise DataFormatError(f"{bag_path}: corrupt bag: the metadata lists {available[topic].count} "
                                      f"messages on {topic}, the storage gave {read[topic]}")
    finally:
        reader.close()


def read_image_messages(bag_path: str | Path, topic: str) -> Iterator[ImageRecord]:
    """ImageRecord (stamp_ns, frame_id, encoding, height, width, step, is_bigendian, data) of
    every message on ``topic``, in log-time order; errors as ``read_image_topics``."""
    for _topic, _log_time, record in read_image_topics(bag_path, [topic]):
        yield record


class BagImageWriter:
    """Context manager writing sensor_msgs/Image messages to a new rosbag2 bag folder.

    ``storage``: "mcap" or "sqlite3". A message is logged at ``log_time_ns`` (default: its header
    stamp); readers return messages in log-time order. The bag is
    closed (metadata written) on exit, also after an error, so what was written stays readable.
    Raises InputError when ``path`` exists or ``storage`` is unknown.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise InputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise InputError(f"{self.path}: output bag exists already; remove it or choose another path")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}  # topic -> messages written

    def __enter__(self) -> Self:
        try:
            self._writer.open()
        except WriterError as exc:
            raise InputError(f"{self.path}: cannot create the bag ({exc})") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._writer.close()

    def write_fields(self, topic: str, stamp_ns: int, fields: EncodedImage | ImageRecord, frame_id: str = "",
                     log_time_ns: int | None = None) -> None:
        """Write one Image stamped ``stamp_ns`` from its data fields (an EncodedImage or an ImageRecord)."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, IMAGE_TYPE, typestore=typestore())
            self.counts[topic] = 0
        types = typestore().types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        msg = types[IMAGE_TYPE](
            header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id),
            height=fields.height, width=fields.width, encoding=fields.encoding,
            is_bigendian=int(fields.is_bigendian), step=fields.step,
            data=np.frombuffer(fields.data, dtype=np.uint8),
        )
        log_time = int(stamp_ns if log_time_ns is None else log_time_ns)
        self._writer.write(self._connections[topic], log_time, typestore().serialize_cdr(msg, IMAGE_TYPE))
        self.counts[topic] += 1

    def write(self, topic: str, stamp_ns: int, array: np.ndarray, encoding: str, frame_id: str = "",
              log_time_ns: int | None = None) -> None:
        """Write ``array`` as an Image: mono8 (H, W) uint8, rgb8 (H, W, 3) uint8, 32FC2 (H, W, 2)
        float32, ... (see ``encode_image``)."""
        self.write_fields(topic, stamp_ns, encode_image(array, encoding), frame_id, log_time_ns)
