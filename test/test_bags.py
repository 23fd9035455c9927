"""rosbag2 I/O: real mcap and sqlite3 bags written and read with rosbags, CDR identical to rclpy's,
and damaged or unsuitable bags reported as DataFormatError naming the bag (and topic)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from jointperception.data.bags import (
    BagImageWriter,
    ImageRecord,
    bag_topics,
    read_image_messages,
    read_image_topics,
    typestore,
)
from jointperception.data.image_msg import EncodedImage, decode_image
from jointperception.errors import DataFormatError, InputError

STORAGE_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
T0 = 1_700_000_000_123_456_789  # ns


def _arrays(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, str]]:
    """topic -> (array, encoding) of one message, 6x8 pixels."""
    return {
        "/cam/rgb": (rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "rgb8"),
        "/cam/mono": (rng.integers(0, 256, (6, 8), dtype=np.uint8), "mono8"),
        "/cam/flow": (rng.normal(0, 3, (6, 8, 2)).astype(np.float32), "32FC2"),
    }


def _padded_big_endian_mono16(values: np.ndarray) -> EncodedImage:
    """mono16 with 4 padding bytes per row, big-endian: exercises step and is_bigendian."""
    height, width = values.shape
    rows = np.zeros((height, width * 2 + 4), dtype=np.uint8)
    rows[:, : width * 2] = values.astype(">u2").view(np.uint8).reshape(height, width * 2)
    return EncodedImage("mono16", height, width, width * 2 + 4, 1, rows.tobytes())


def _write_bag(path: Path, storage: str, frames: int = 3) -> dict[str, list[tuple[int, np.ndarray]]]:
    rng = np.random.default_rng(5)
    written: dict[str, list[tuple[int, np.ndarray]]] = {}
    with BagImageWriter(path, storage=storage) as writer:
        for i in range(frames):
            stamp = T0 + i * 33_333_333
            for topic, (array, encoding) in _arrays(rng).items():
                writer.write(topic, stamp, array, encoding, frame_id=f"f{i}")
                written.setdefault(topic, []).append((stamp, array))
            mono16 = rng.integers(0, 65536, (6, 8)).astype(np.uint16)
            writer.write_fields("/cam/mono16", stamp, _padded_big_endian_mono16(mono16), frame_id=f"f{i}")
            written.setdefault("/cam/mono16", []).append((stamp, mono16))
        assert writer.counts == {topic: frames for topic in written}
    return written


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_is_a_real_rosbag2_bag(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "bag"
    written = _write_bag(bag, storage)
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 9
    assert metadata["storage_identifier"] == storage
    assert [Path(p).suffix for p in metadata["relative_file_paths"]] == [STORAGE_SUFFIX[storage]]
    topics = bag_topics(bag)
    assert {name: (info.msgtype, info.count) for name, info in topics.items()} == {
        topic: ("sensor_msgs/msg/Image", 3) for topic in written}

    for topic, expected in written.items():
        records = list(read_image_messages(bag, topic))
        assert [r.stamp_ns for r in records] == [stamp for stamp, _ in expected]
        assert [r.frame_id for r in records] == ["f0", "f1", "f2"]
        for record, (_stamp, array) in zip(records, expected):
            assert isinstance(record, ImageRecord)
            assert (record.height, record.width) == array.shape[:2]
            decoded = decode_image(*record[2:])
            assert decoded.dtype == array.dtype
            np.testing.assert_array_equal(decoded, array)
    merged = [topic for topic, _log_time, _record in read_image_topics(bag, ["/cam/rgb", "/cam/flow"])]
    assert merged == ["/cam/rgb", "/cam/flow"] * 3  # log-time order, write order within a stamp


def test_storage_file_is_readable_directly(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    written = _write_bag(bag, "mcap", frames=2)
    records = list(read_image_messages(bag / "bag.mcap", "/cam/mono"))
    np.testing.assert_array_equal(decode_image(*records[1][2:]), written["/cam/mono"][1][1])


def _image_cdr_padding(frame_id: str, encoding: str) -> set[int]:
    """Byte offsets of the alignment padding in a little-endian CDR sensor_msgs/Image."""
    padding: set[int] = set()
    position = 4 + 8  # encapsulation header, stamp (sec, nanosec)
    for text in (frame_id, None, None, encoding):  # a string, or a uint32 (height, width)
        gap = -(position - 4) % 4  # uint32 fields align to 4 from the end of the 4-byte header
        padding.update(range(position, position + gap))
        position += gap + 4 + (len(text) + 1 if text is not None else 0)
    position += 1  # is_bigendian (uint8)
    gap = -(position - 4) % 4
    return padding | set(range(position, position + gap))  # before step (uint32)


@pytest.mark.parametrize("frame_id", ["optical", "cam"])
def test_cdr_bytes_equal_rclpy_serialize_message(tmp_path: Path, frame_id: str) -> None:
    """Same bytes as rclpy, except alignment padding, which rclpy leaves uninitialised and
    rosbags writes as zeros; both parse each other's bytes to the same message."""
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    bag = tmp_path / "bag"
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    with BagImageWriter(bag) as writer:
        writer.write("/camera/image_raw", T0, pixels, "bgr8", frame_id=frame_id)
    with Reader(bag) as reader:
        ((_connection, log_time, raw),) = list(reader.messages())
    raw = bytes(raw)
    assert log_time == T0
    msg = Image(encoding="bgr8", height=5, width=7, step=21, is_bigendian=0, data=pixels.tobytes())
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(T0, 1_000_000_000)
    reference = bytes(serialize_message(msg))
    padding = _image_cdr_padding(frame_id, "bgr8")
    assert len(raw) == len(reference)
    assert [i for i in range(len(raw)) if raw[i] != reference[i] and i not in padding] == []
    assert all(raw[i] == 0 for i in padding)
    back = deserialize_message(raw, Image)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (
        msg.header.stamp.sec, msg.header.stamp.nanosec, frame_id)
    assert (back.encoding, back.height, back.width, back.step) == ("bgr8", 5, 7, 21)
    assert bytes(back.data) == pixels.tobytes()
    parsed = typestore().deserialize_cdr(reference, "sensor_msgs/msg/Image")
    assert (parsed.header.frame_id, parsed.encoding, parsed.step) == (frame_id, "bgr8", 21)
    assert parsed.data.tobytes() == pixels.tobytes()


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def _read_all(bag: Path) -> list[ImageRecord]:
    return list(read_image_messages(bag, "/cam/rgb"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_damaged_bags_raise_data_format_error_naming_the_bag(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "good"
    _write_bag(bag, storage)
    with pytest.raises(DataFormatError, match="not found"):
        _read_all(tmp_path / "missing")

    truncated = tmp_path / "truncated"
    shutil.copytree(bag, truncated)
    data = _storage_file(bag).read_bytes()
    _storage_file(truncated).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=str(truncated)):
        _read_all(truncated)

    bad_message = tmp_path / "bad_message"  # the CDR header of one stored message destroyed
    shutil.copytree(bag, bad_message)
    with Reader(bag) as reader:
        raw = bytes(next(r for c, _t, r in reader.messages() if c.topic == "/cam/rgb"))
    assert data.count(raw) == 1
    _storage_file(bad_message).write_bytes(data.replace(raw, b"\x07\x07" + raw[2:]))
    with pytest.raises(DataFormatError, match=f"{bad_message}.*corrupt"):
        _read_all(bad_message)

    lost = tmp_path / "lost_messages"  # metadata promises more than the storage holds
    shutil.copytree(bag, lost)
    meta = yaml.safe_load((lost / "metadata.yaml").read_text())
    for entry in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["message_count"] += 1
    (lost / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(DataFormatError, match=f"{lost}.*lists 4 messages on /cam/rgb, the storage gave 3"):
        _read_all(lost)

    garbled = tmp_path / "garbled_metadata"
    shutil.copytree(bag, garbled)
    (garbled / "metadata.yaml").write_text("rosbag2_bagfile_information: [unterminated\n")
    with pytest.raises(DataFormatError, match=str(garbled)):
        bag_topics(garbled)


def test_missing_or_non_image_topic_is_named_with_the_available_ones(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        store = typestore()
        string_type = "std_msgs/msg/String"
        connection = writer.add_connection("/chatter", string_type, typestore=store)
        writer.write(connection, T0, store.serialize_cdr(store.types[string_type](data="hi"), string_type))
    with pytest.raises(DataFormatError, match=r"no topic '/camera/image_raw'.*topics: /chatter \[std_msgs/msg/String\]"):
        list(read_image_messages(bag, "/camera/image_raw"))
    with pytest.raises(DataFormatError, match=r"'/chatter' holds std_msgs/msg/String, not sensor_msgs/msg/Image"):
        list(read_image_messages(bag, "/chatter"))


def test_writer_refuses_existing_path_and_unknown_storage(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="exists already"):
        BagImageWriter(tmp_path / "taken")
    with pytest.raises(InputError, match="storage must be one of mcap, sqlite3"):
        BagImageWriter(tmp_path / "new", storage="bag1")
    assert not (tmp_path / "new").exists()
