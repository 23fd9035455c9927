"""ROS 2 node ``camera_source``: frames of an image folder, a video file or a camera device as
sensor_msgs/Image rgb8 on ``image_raw``, plus CameraInfo on ``camera_info`` when a calibration
YAML (the camera_calibration format) is given. Stamps are the node clock at publish time.

As an image_transport publisher does, it also offers the frames as sensor_msgs/CompressedImage
(``compression`` jpeg or png) on ``image_raw/compressed`` (after remapping ``image_raw``),
encoded only while someone subscribes there.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
import yaml
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from jointperception.data.compressed_image import encode_compressed
from jointperception.data.image_msg import encode_image
from jointperception.data.sources import open_frames, source_warnings
from jointperception.errors import ConfigError, DataFormatError
from jointperception.ranges import FLOAT_RANGES, INT_RANGES
from jointperception.ros.common import describe, image_qos, qos_error, transport_topic
from jointperception.ros.node_main import run_node


@dataclass(frozen=True)
class Calibration:
    """Camera intrinsics as in sensor_msgs/CameraInfo: k (9), r (9), p (12) row-major; d free length."""

    width: int
    height: int
    distortion_model: str
    d: list[float]
    k: list[float]
    r: list[float]
    p: list[float]


def _matrix(doc: dict, key: str, size: int | None, path: Path) -> list[float]:
    entry = doc.get(key)
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or (size is not None and len(data) != size):
        raise DataFormatError(f"{path}: {key}.data must be a list of {size or 'some'} numbers")
    return [float(value) for value in data]


def load_calibration(path: str | Path) -> Calibration:
    """Read a camera_calibration YAML (image_width, image_height, camera_matrix, ...).

    rectification_matrix defaults to identity, projection_matrix to [K | 0], distortion to none;
    raises DataFormatError naming the file for a missing file or a malformed entry.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataFormatError(f"{path}: cannot read calibration YAML ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(key), int) for key in ("image_width", "image_height")):
        raise DataFormatError(f"{path}: image_width and image_height must be integers")
    k = _matrix(doc, "camera_matrix", 9, path)
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    k_zero_column = k[0:3] + [0.0] + k[3:6] + [0.0] + k[6:9] + [0.0]  # P = [K | 0]
    return Calibration(
        width=doc["image_width"],
        height=doc["image_height"],
        distortion_model=str(doc.get("distortion_model", "plumb_bob")),
        d=_matrix(doc, "distortion_coefficients", None, path) if "distortion_coefficients" in doc else [],
        k=k,
        r=_matrix(doc, "rectification_matrix", 9, path) if "rectification_matrix" in doc else identity,
        p=_matrix(doc, "projection_matrix", 12, path) if "projection_matrix" in doc else k_zero_column,
    )


def device_frames(index: int) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 RGB of camera device ``index`` until it stops delivering."""
    capture = cv2.VideoCapture(index)
    try:
        if not capture.isOpened():
            raise DataFormatError(f"camera device {index}: cannot open")
        while (grabbed := capture.read())[0]:
            yield cv2.cvtColor(grabbed[1], cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_source(source: str) -> Iterable[tuple[str, np.ndarray]]:
    """A device index ("0"), a video file or an image folder -> (stem, (H, W, 3) uint8 RGB) pairs;
    after a pass, ``source_warnings`` of it names a video that decoded fewer frames than it declares."""
    if source.isdigit():
        return ((str(index), frame) for index, frame in enumerate(device_frames(int(source))))
    return open_frames(source)


def frames_of(source: str) -> Iterator[np.ndarray]:
    """A device index ("0"), a video file or an image folder -> iterator of (H, W, 3) uint8 RGB."""
    return (frame for _stem, frame in open_source(source))


class CameraSource(Node):
    """Publishes one frame per timer tick; at the end of the source it loops or finishes."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("camera_source", **kwargs)
        self.add_on_set_parameters_callback(self._validate)
        self.declare_parameter("source", "", describe("image folder, video file or camera device index", True))
        self.declare_parameter("rate_hz", 30.0, describe("frames per second", True, floats=FLOAT_RANGES["rate_hz"]))
        self.declare_parameter("loop", False, describe("start again at the end of a folder or video"))
        self.declare_parameter("frame_id", "camera", describe("header.frame_id of images and camera_info"))
        self.declare_parameter("calibration_file", "", describe("camera_calibration YAML; '' = no camera_info", True))
        self.declare_parameter("qos", "sensor_data", describe("sensor_data | reliable; depth 1", True))
        self.declare_parameter("compression", "jpeg", describe("codec of image_raw/compressed: jpeg | png", True))
        self.declare_parameter("jpeg_quality", 90, describe("JPEG quality of image_raw/compressed", ints=INT_RANGES["jpeg_quality"]))
        self.source = self.get_parameter("source").value
        if not self.source:
            raise ConfigError("set the parameter source: an image folder, a video file or a camera device index")
        calibration_file = self.get_parameter("calibration_file").value
        self.calibration = load_calibration(calibration_file) if calibration_file else None
        self.finished = False  # set when a non-looping source ends
        self.published = 0
        self._opened = open_source(self.source)
        self._frames = iter(self._opened)
        qos = image_qos(self.get_parameter("qos").value)
        self._image_pub = self.create_publisher(Image, "image_raw", qos)
        self._compressed_pub = self.create_publisher(CompressedImage, transport_topic(self, "image_raw", "compressed")[1], qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._timer = self.create_timer(1.0 / self.get_parameter("rate_hz").value, self._tick)

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        for param in parameters:
            reason = qos_error(param.value) if param.name == "qos" else None
            if param.name == "compression" and param.value not in ("jpeg", "png"):
                reason = f"compression must be jpeg or png, got {param.value!r}"
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _next_frame(self) -> np.ndarray | None:
        item = next(self._frames, None)
        if item is None:
            for warning in source_warnings(self._opened):  # a video that ends before its declared count
                self.get_logger().warning(f"{warning}: the pass ends early")
        if item is None and self.get_parameter("loop").value and self.published > 0:
            self._opened = open_source(self.source)
            self._frames = iter(self._opened)
            item = next(self._frames, None)
        return None if item is None else item[1]

    def _tick(self) -> None:
        frame = self._next_frame()
        if frame is None:
            self.get_logger().info(f"end of {self.source} after {self.published} frames")
            self._timer.cancel()
            self.finished = True
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.get_parameter("frame_id").value)
        self._image_pub.publish(Image(header=header, **vars(encode_image(frame, "rgb8"))))
        if self._compressed_pub.get_subscription_count() > 0:
            encoded = encode_compressed(frame, self.get_parameter("compression").value,
                                        self.get_parameter("jpeg_quality").value)
            self._compressed_pub.publish(CompressedImage(header=header, **vars(encoded)))
        if self.calibration is not None:
            cal = self.calibration
            if (frame.shape[1], frame.shape[0]) != (cal.width, cal.height) and self.published == 0:
                self.get_logger().warning(
                    f"calibration is for {cal.width}x{cal.height}, frames are {frame.shape[1]}x{frame.shape[0]}"
                )
            self._info_pub.publish(CameraInfo(
                header=header, width=cal.width, height=cal.height, distortion_model=cal.distortion_model,
                d=cal.d, k=cal.k, r=cal.r, p=cal.p,
            ))
        self.published += 1


def main(args: list[str] | None = None) -> int:
    """``camera_source --ros-args -p source:=PATH|INDEX``; exits 0 at the end of a non-looping source."""
    def spin_until_finished(node: CameraSource) -> None:
        executor = SingleThreadedExecutor()  # its own: rclpy's global one is discarded by a shutdown racing this loop
        executor.add_node(node)
        try:
            while rclpy.ok() and not node.finished:
                executor.spin_once(timeout_sec=0.1)
        finally:  # its guard conditions go now, before the node and the context; not whenever it is collected
            executor.shutdown()

    return run_node("camera_source", CameraSource, spin_until_finished, args=args)


if __name__ == "__main__":
    sys.exit(main())
