"""rosbag2 I/O for camera topics with the ``rosbags`` library (no ROS install needed): camera
frames are sensor_msgs/Image or sensor_msgs/CompressedImage (the ``compressed`` transport).

Bags are real rosbag2 bags (a folder with metadata.yaml and .mcap or .db3 files, version 9):
their CDR bytes equal rclpy's ``serialize_message`` except for alignment padding, zero here and
left uninitialised by rclpy. Messages are built and parsed with the rosbags ROS 2 Jazzy
typestore; the storage (mcap or sqlite3) is read from the bag itself.
"""
from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self, TypeVar

import apsw
import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from jointperception.data.compressed_image import EncodedCompressedImage, decode_compressed, encode_compressed
from jointperception.data.image_msg import EncodedImage, encode_image, image_to_rgb
from jointperception.errors import DataFormatError, InputError, ShortInputError

T = TypeVar("T")

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)  # message types a camera topic may hold
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

    data: (step * height,) uint8 array; decode with ``jointperception.data.image_msg.decode_image``.
    """

    stamp_ns: int
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: np.ndarray


class CompressedImageRecord(NamedTuple):
    """One sensor_msgs/CompressedImage: header stamp (ns) and frame_id, format, data.

    data: (N,) uint8 array; decode with ``jointperception.data.compressed_image.decode_compressed``.
    """

    stamp_ns: int
    frame_id: str
    format: str
    data: np.ndarray


FrameRecord = ImageRecord | CompressedImageRecord


def record_rgb(record: FrameRecord) -> np.ndarray:
    """A camera frame of a bag -> (H, W, 3) uint8 RGB; raises ImageConversionError with a cause."""
    if isinstance(record, CompressedImageRecord):
        return decode_compressed(record.format, record.data)
    return image_to_rgb(*record[2:])


def record_encoding(record: FrameRecord) -> str:
    """The stream's encoding: the Image encoding or the CompressedImage format (a change resets the pair)."""
    return record.format if isinstance(record, CompressedImageRecord) else record.encoding


def _open_reader(bag_path: Path) -> Reader:
    """An open Reader; DataFormatError naming the bag when it is missing or unreadable."""
    if not bag_path.exists():
        raise DataFormatError(f"{bag_path}: rosbag2 bag not found")
    if is_unclosed_bag(bag_path):
        raise DataFormatError(unclosed_bag_message(bag_path))
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
        if available[topic].msgtype not in FRAME_TYPES:
            raise DataFormatError(f"{bag_path}: topic {topic!r} holds {available[topic].msgtype}, "
                                  f"not {' or '.join(FRAME_TYPES)}")


def require_image_topics(bag_path: str | Path, topics: Sequence[str]) -> dict[str, TopicInfo]:
    """``bag_topics``, after checking that each of ``topics`` is a camera topic of the bag (Image or
    CompressedImage); else DataFormatError naming the bag and topic, listing the bag's topics."""
    available = bag_topics(bag_path)
    _check_image_topics(Path(bag_path), available, topics)
    return available


def is_bag(path: str | Path) -> bool:
    """A rosbag2 bag: a folder holding metadata.yaml (or storage files without it: an unclosed bag,
    which readers refuse with ``unclosed_bag_message``), or one .mcap / .db3 storage file."""
    path = Path(path)
    if path.is_dir():
        return (path / "metadata.yaml").is_file() or is_unclosed_bag(path)
    return path.is_file() and path.suffix in (".mcap", ".db3")


def is_unclosed_bag(path: Path) -> bool:
    """A folder of .mcap / .db3 files without metadata.yaml: a bag whose writer never closed it
    (rosbag2 writes metadata.yaml at close), e.g. a recorder killed with SIGKILL."""
    return (path.is_dir() and not (path / "metadata.yaml").exists()
            and any(child.suffix in (".mcap", ".db3") for child in path.iterdir()))


def unclosed_bag_message(path: Path) -> str:
    return (f"{path}: incomplete rosbag2 bag: no metadata.yaml, its recorder never closed it (killed?); "
            f"`ros2 bag reindex {path}` may rebuild it")


def _camera_names(available: dict[str, TopicInfo]) -> list[str]:
    return sorted(name for name, info in available.items() if info.msgtype in FRAME_TYPES)


def camera_topics(bag_path: str | Path) -> list[str]:
    """The bag's topics of camera frames (Image or CompressedImage), sorted by name."""
    return _camera_names(bag_topics(bag_path))


def camera_topic(bag_path: str | Path, topic: str | None) -> tuple[str, TopicInfo]:
    """(``topic``, its TopicInfo) after checking it holds camera frames (Image or CompressedImage);
    None: the bag's only camera topic. Reads the bag's metadata once. InputError when None is
    ambiguous, listing the camera topics; DataFormatError as ``require_image_topics``."""
    available = bag_topics(bag_path)
    if topic is None:
        cameras = _camera_names(available)
        if len(cameras) != 1:
            raise InputError(f"{bag_path}: give --topic; the bag's camera topics (Image or CompressedImage): "
                             f"{', '.join(cameras) or 'none'}")
        topic = cameras[0]
    _check_image_topics(Path(bag_path), available, [topic])
    return topic, available[topic]


def _record(raw: bytes | memoryview, msgtype: str) -> FrameRecord:
    msg = typestore().deserialize_cdr(raw, msgtype)
    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    if msgtype == COMPRESSED_IMAGE_TYPE:
        return CompressedImageRecord(stamp_ns, msg.header.frame_id, msg.format, msg.data)
    return ImageRecord(stamp_ns, msg.header.frame_id, msg.encoding, msg.height, msg.width, msg.step,
                       msg.is_bigendian, msg.data)


def read_image_topics(bag_path: str | Path, topics: Sequence[str]) -> Iterator[tuple[str, int, FrameRecord]]:
    """(topic, log time ns, ImageRecord or CompressedImageRecord) for every message of ``topics``,
    in log-time order (the order a recorder received them; header stamps may differ, e.g. go
    back when a source loops).

    Raises (on first use) DataFormatError naming the bag for a missing or corrupt bag or message,
    or more messages than the metadata lists were read (after the last one); ShortInputError (after
    the last one) when fewer were read (``stop_at_shortfall``); and as
    ``require_image_topics`` for a topic that is absent or holds no camera frames.
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
                yield connection.topic, log_time, _record(raw, connection.msgtype)
        except _CORRUPT as exc:
            raise DataFormatError(f"{bag_path}: corrupt bag data ({type(exc).__name__}: {exc})") from exc
        for topic in topics:
            if read[topic] < available[topic].count:
                raise ShortInputError(f"{bag_path}: the metadata lists {available[topic].count} messages on {topic}, "
                                      f"the storage gave {read[topic]}")
            if read[topic] != available[topic].count:
                raise DataFormatError(f"{bag_path}: corrupt bag: the metadata lists {available[topic].count} "
                                      f"messages on {topic}, the storage gave {read[topic]}")
    finally:
        reader.close()


def stop_at_shortfall(messages: Iterable[T], shortfalls: list[str]) -> Iterator[T]:
    """The items of ``messages`` until it raises ShortInputError, whose message is appended to
    ``shortfalls``; any other error propagates."""
    try:
        yield from messages
    except ShortInputError as exc:
        shortfalls.append(str(exc))


def read_image_messages(bag_path: str | Path, topic: str) -> Iterator[FrameRecord]:
    """ImageRecord (stamp_ns, frame_id, encoding, height, width, step, is_bigendian, data) or
    CompressedImageRecord (stamp_ns, frame_id, format, data) of every message on the camera topic
    ``topic``, in log-time order; errors as ``read_image_topics``."""
    for _topic, _log_time, record in read_image_topics(bag_path, [topic]):
        yield record


class BagImageWriter:
    """Context manager writing sensor_msgs/Image and CompressedImage messages to a new rosbag2 bag folder.

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
        self._connections: dict[str, tuple[object, str]] = {}  # topic -> (connection, message type)
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

    def _write_message(self, topic: str, msgtype: str, log_time_ns: int, **fields: object) -> None:
        if topic not in self._connections:
            self._connections[topic] = (self._writer.add_connection(topic, msgtype, typestore=typestore()), msgtype)
            self.counts[topic] = 0
        connection, connection_type = self._connections[topic]
        if connection_type != msgtype:
            raise InputError(f"{self.path}: topic {topic} holds {connection_type}, cannot add a {msgtype}")
        msg = typestore().types[msgtype](**fields)
        self._writer.write(connection, int(log_time_ns), typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def _header(self, stamp_ns: int, frame_id: str) -> object:
        types = typestore().types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                            frame_id=frame_id)

    def write_fields(self, topic: str, stamp_ns: int,
                     fields: EncodedImage | ImageRecord | EncodedCompressedImage | CompressedImageRecord,
                     frame_id: str = "", log_time_ns: int | None = None) -> None:
        """Write one message stamped ``stamp_ns`` from its data fields: an Image from an
        EncodedImage or ImageRecord, a CompressedImage from an EncodedCompressedImage or
        CompressedImageRecord. A topic keeps the type of its first message (else InputError)."""
        header = self._header(stamp_ns, frame_id)
        log_time = stamp_ns if log_time_ns is None else log_time_ns
        data = np.frombuffer(fields.data, dtype=np.uint8)
        if isinstance(fields, EncodedCompressedImage | CompressedImageRecord):
            self._write_message(topic, COMPRESSED_IMAGE_TYPE, log_time, header=header, format=fields.format, data=data)
            return
        self._write_message(topic, IMAGE_TYPE, log_time, header=header, height=fields.height, width=fields.width,
                            encoding=fields.encoding, is_bigendian=int(fields.is_bigendian), step=fields.step, data=data)

    def write(self, topic: str, stamp_ns: int, array: np.ndarray, encoding: str, frame_id: str = "",
              log_time_ns: int | None = None) -> None:
        """Write ``array`` as an Image: mono8 (H, W) uint8, rgb8 (H, W, 3) uint8, 32FC2 (H, W, 2)
        float32, ... (see ``encode_image``)."""
        self.write_fields(topic, stamp_ns, encode_image(array, encoding), frame_id, log_time_ns)

    def write_compressed(self, topic: str, stamp_ns: int, rgb: np.ndarray, codec: str, jpeg_quality: int = 90,
                         frame_id: str = "", log_time_ns: int | None = None) -> None:
        """Write ``rgb`` (H, W, 3) uint8 as a CompressedImage, jpeg or png (see ``encode_compressed``)."""
        self.write_fields(topic, stamp_ns, encode_compressed(rgb, codec, jpeg_quality), frame_id, log_time_ns)
