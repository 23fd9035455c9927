"""The node logic that runs without spinning: parameters, latest-only slot, pair resets,
diagnostics, camera_info scaling and calibration files."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from jointperception.data.formats import write_image  # noqa: E402
from jointperception.errors import DataFormatError  # noqa: E402
from jointperception.ros.camera_source import frames_of, load_calibration  # noqa: E402
from jointperception.ros.common import image_qos  # noqa: E402
from jointperception.ros.node_parts import (  # noqa: E402
    PARAMETERS,
    FrameSlot,
    diagnostic_status,
    parameter_error,
)
from jointperception.ros.perception_worker import scale_camera_info  # noqa: E402
from jointperception.runtime.stream import PairFrame, pair_reset_reason  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _frame(seconds: float, encoding: str = "rgb8", shape: tuple[int, int] = (4, 6)) -> PairFrame:
    return PairFrame(Header(), encoding, np.zeros((*shape, 3), dtype=np.uint8), round(seconds * 1e9))


def test_pair_resets_on_backward_stamp_format_change_and_gap() -> None:
    previous = _frame(10.0)
    assert pair_reset_reason(None, previous, 1.0) is None
    assert pair_reset_reason(previous, _frame(10.5), 1.0) is None
    assert pair_reset_reason(previous, _frame(10.0), 1.0) is None  # equal stamps still pair
    assert pair_reset_reason(previous, _frame(9.9), 1.0) == "stamp_backwards"
    assert pair_reset_reason(previous, _frame(10.1, "bgr8"), 1.0) == "encoding_change"
    assert pair_reset_reason(previous, _frame(10.1, shape=(6, 4)), 1.0) == "size_change"
    assert pair_reset_reason(previous, _frame(11.5), 1.0) == "time_gap"
    assert pair_reset_reason(previous, _frame(100.0), 0.0) is None  # 0 = never on gaps


def test_frame_slot_keeps_only_the_newest() -> None:
    slot = FrameSlot()
    assert slot.put("a") is False
    assert slot.put("b") is True  # "a" was never taken: a stale drop
    assert slot.take() == "b"
    assert slot.take(timeout=0.01) is None
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.append(slot.take(timeout=10.0)))
    worker.start()
    slot.put("c")
    worker.join(10.0)
    assert taken == ["c"]
    slot.put("d")
    slot.close()
    assert slot.take() is None  # closed: the worker stops even with an item left


def test_parameter_checks_beyond_the_descriptors(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    assert parameter_error("backend", "torch") is None
    assert "backend" in parameter_error("backend", "bogus")
    for device in ("cpu", "cuda", "cuda:1"):
        assert parameter_error("device", device) is None
    for device in ("gpu", "cuda:", "CPU"):
        assert "device" in parameter_error("device", device)
    assert "qos" in parameter_error("qos", "best_effort")
    assert parameter_error("model", "") is None and parameter_error("model", str(model)) is None
    assert "not found" in parameter_error("model", str(tmp_path / "missing.safetensors"))
    assert parameter_error("mask_threshold", 0.3) is None
    for source in ("fused", "segmentation", "motion"):
        assert parameter_error("mask_source", source) is None
    assert "mask_source" in parameter_error("mask_source", "both")
    assert parameter_error("precision", "int8") is None and "precision" in parameter_error("precision", "fp64")


def test_config_file_lists_every_parameter_with_its_default() -> None:
    config = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    assert set(config) == set(PARAMETERS)
    for name, (default, descriptor) in PARAMETERS.items():
        assert config[name] == default and type(config[name]) is type(default), name
        assert descriptor.description, name


def test_image_qos_depth_one() -> None:
    assert image_qos("sensor_data").reliability == ReliabilityPolicy.BEST_EFFORT
    assert image_qos("reliable").reliability == ReliabilityPolicy.RELIABLE
    assert image_qos("sensor_data").depth == image_qos("reliable").depth == 1


def test_camera_info_is_scaled_to_the_output_size() -> None:
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.0],
                      k=[500.0, 1.0, 320.0, 0.0, 400.0, 240.0, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[500.0, 1.0, 320.0, -50.0, 0.0, 400.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 64, 48, 320, 240
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 7, 5
    out = scale_camera_info(info, 320, 120, header)
    assert (out.width, out.height, out.header.frame_id, out.header.stamp.nanosec) == (320, 120, "cam", 5)
    np.testing.assert_allclose(out.k, [250.0, 0.5, 160.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(out.p, [250.0, 0.5, 160.0, -25.0, 0.0, 100.0, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(out.d, info.d)
    assert (out.roi.x_offset, out.roi.y_offset, out.roi.width, out.roi.height) == (32, 12, 160, 60)
    assert info.width == 640 and info.k[0] == 500.0  # the input is not modified
    unknown = scale_camera_info(CameraInfo(), 32, 16, header)
    assert (unknown.width, unknown.height) == (32, 16) and list(unknown.k) == [0.0] * 9


def _status(counts: dict[str, int], previous: dict[str, int], alive: bool = True) -> DiagnosticStatus:
    facts = {"backend": "torch", "device": "cpu"}
    return diagnostic_status("node: perception", Counter(counts), Counter(previous), 2.0,
                             np.array([10.0, 20.0, 30.0]), np.array([5.0]), facts, alive)


def test_diagnostics_levels_and_values() -> None:
    status = _status({"received": 10, "processed": 8, "bad: nan_values": 1, "dropped: stale": 2},
                     {"received": 4, "processed": 2, "bad: nan_values": 1})
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK
    assert values["rate (Hz)"] == "3.0" and values["input rate (Hz)"] == "3.0"
    assert values["latency p50 (ms)"] == "20.0" and values["backend"] == "torch"
    assert values["bad: nan_values"] == "1" and values["bad frames"] == "1" and values["dropped frames"] == "2"
    assert _status({"received": 4, "bad: zero_size": 1}, {"received": 3}).level == DiagnosticStatus.WARN
    assert _status({"received": 4}, {"received": 4}).level == DiagnosticStatus.WARN
    assert _status({"received": 9}, {"received": 4}, alive=False).level == DiagnosticStatus.ERROR


def test_calibration_yaml_reads_the_camera_calibration_format(tmp_path: Path) -> None:
    path = tmp_path / "cam.yaml"
    path.write_text(
        "image_width: 640\nimage_height: 480\ncamera_name: cam\n"
        "camera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 400, 240, 0, 0, 1]}\n"
        "distortion_model: rational_polynomial\n"
        "distortion_coefficients: {rows: 1, cols: 8, data: [1, 2, 3, 4, 5, 6, 7, 8]}\n"
        "rectification_matrix: {rows: 3, cols: 3, data: [0, 1, 0, 1, 0, 0, 0, 0, 1]}\n"
        "projection_matrix: {rows: 3, cols: 4, data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}\n"
    )
    cal = load_calibration(path)
    assert (cal.width, cal.height, cal.distortion_model) == (640, 480, "rational_polynomial")
    assert cal.d == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert cal.k[0] == 500.0 and cal.r[1] == 1.0 and cal.p[11] == 12.0
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text("image_width: 64\nimage_height: 32\ncamera_matrix: {data: [50, 0, 32, 0, 50, 16, 0, 0, 1]}\n")
    cal = load_calibration(minimal)
    assert cal.d == [] and cal.r == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert cal.p == [50.0, 0.0, 32.0, 0.0, 0.0, 50.0, 16.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("text", [
    "image_width: 64\nimage_height: 32\n",  # no camera_matrix
    "image_width: 64\nimage_height: 32\ncamera_matrix: {data: [1, 2, 3]}\n",
    "image_width: wide\nimage_height: 32\ncamera_matrix: {data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n",
    "image_width: [unclosed\n",
])
def test_bad_calibration_files_name_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataFormatError, match="bad.yaml"):
        load_calibration(path)
    with pytest.raises(DataFormatError, match="missing.yaml"):
        load_calibration(tmp_path / "missing.yaml")


def test_folder_source_yields_rgb_frames(tmp_path: Path) -> None:
    frames = [np.full((4, 6, 3), value, dtype=np.uint8) for value in (10, 20)]
    for index, frame in enumerate(frames):
        write_image(tmp_path / f"{index}.png", frame)
    got = list(frames_of(str(tmp_path)))
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, frames))
