"""ROS 2 node ``jointperception_node``: camera frames in; mask, flow, occlusion and motion layers out.

Topics (DESIGN §3), every output with the header of the newest input frame:
  in:  ``image`` (sensor_msgs/Image, remap it), ``camera_info`` (optional)
  out: ``~/mask`` mono8, ``~/flow`` 32FC2 (per pixel of the newest frame: its displacement to the
       previous frame, pixels), ``~/occlusion`` mono8 (pixels of the newest frame not visible in
       the previous one), ``~/motion_layers`` mono8, ``~/flow_color`` rgb8, ``~/overlay`` rgb8,
       ``~/camera_info`` (scaled to the output size = input size); ``/diagnostics`` at 1 Hz.
The subscription callback only fills a latest-only slot; a worker thread converts, pairs and
runs the network, so the executor never blocks. Outputs are computed only when subscribed.
"""
from __future__ import annotations

import copy
import sys
import threading
import time
from collections import Counter

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from jointperception.errors import JointPerceptionError
from jointperception.ros.common import image_qos
from jointperception.ros.convert import (
    ImageConversionError,
    encode_image,
    image_msg_to_rgb,
)
from jointperception.ros.node_parts import (
    PARAMETERS,
    FrameSlot,
    RunningStats,
    diagnostic_status,
    parameter_error,
)
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline
from jointperception.runtime.stream import OUTPUT_ENCODINGS, PairFrame, output_image, pair_reset_reason

NODE_NAME = "jointperception_node"


def scale_camera_info(info: CameraInfo, width: int, height: int, header: Header) -> CameraInfo:
    """Copy of ``info`` for a width x height image, with ``header``.

    K, P and the ROI are scaled by sx = width / info.width, sy = height / info.height (1 where
    info gives no size); D and R do not depend on the image size.
    """
    out = copy.deepcopy(info)
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    k, p = list(info.k), list(info.p)
    for i in (0, 1, 2):  # fx, skew, cx  |  fx', skew', cx' (rows of x)
        k[i] *= sx
        p[i] *= sx
    p[3] *= sx  # Tx = -fx' * baseline
    for i in (4, 5):  # fy, cy
        k[i] *= sy
    for i in (5, 6, 7):  # fy', cy', Ty
        p[i] *= sy
    out.k, out.p = k, p
    out.roi.x_offset, out.roi.width = round(info.roi.x_offset * sx), round(info.roi.width * sx)
    out.roi.y_offset, out.roi.height = round(info.roi.y_offset * sy), round(info.roi.height * sy)
    out.header, out.width, out.height = header, width, height
    return out


class PerceptionNode(Node):
    """Pairs each frame with the previous one and publishes the pipeline outputs of the newest."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.add_on_set_parameters_callback(self._validate)  # also checks the initial values
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        if self._param("threads") > 0:
            torch.set_num_threads(self._param("threads"))
        model = self._param("model") or None
        size = (self._param("network_width"), self._param("network_height"))
        self.pipeline = PerceptionPipeline.from_model_file(model, self._param("backend"), self._param("device"), size)
        self.worker_error: BaseException | None = None
        self._stats = RunningStats()
        self._last_status: tuple[float, Counter[str]] = (time.monotonic(), Counter())
        self._slot = FrameSlot()
        self._camera_info: CameraInfo | None = None
        self._logged_causes: set[str] = set()
        qos = image_qos(self._param("qos"))
        self.create_subscription(Image, "image", self._on_image, qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self._image_pubs = {
            name: self.create_publisher(Image, f"~/{name}", qos)
            for name in OUTPUT_ENCODINGS
        }
        self._info_pub = self.create_publisher(CameraInfo, "~/camera_info", qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self._param("diagnostics_period_s"), self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="perception_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.pipeline.model_path}, backend {self._param('backend')} on {self._param('device')}, "
            f"network {size[0]}x{size[1]}, qos {self._param('qos')}"
        )

    def _param(self, name: str) -> object:
        return self.get_parameter(name).value

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reject what the descriptors cannot express: choices, device names, missing files."""
        for param in parameters:
            reason = parameter_error(param.name, param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _on_image(self, msg: Image) -> None:
        """Executor thread: keep only the newest frame; a frame it replaces is a stale drop."""
        self._stats.count("received")
        if self._slot.put((msg, time.monotonic())):
            self._stats.count("dropped: stale")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _warn_once(self, cause: str, text: str) -> None:
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            self.get_logger().warning(f"{text} [{cause}; logged once, counted in /diagnostics]")

    def _work(self) -> None:
        """Worker thread body. An error stops the node (exit code 1) rather than leave it deaf;
        an error once the context is shut down (Ctrl-C while publishing) is the normal stop."""
        try:
            self._serve()
        except Exception as exc:
            if not self.context.ok():
                return
            self.worker_error = exc
            self.get_logger().fatal(f"perception worker stopped: {exc!r}")
            self.context.try_shutdown()
            raise

    def _serve(self) -> None:
        """Worker thread: take the newest frame, convert, pair with the previous one, publish."""
        previous: PairFrame | None = None
        last_start = -float("inf")
        while (item := self._slot.take()) is not None:
            msg, received = item
            max_rate = self._param("max_rate_hz")
            if max_rate > 0 and received - last_start < 1.0 / max_rate:
                self._stats.count("dropped: rate_limit")
                continue
            last_start = received
            try:
                rgb = image_msg_to_rgb(msg)
            except ImageConversionError as exc:
                self._stats.count(f"bad: {exc.cause}")
                self._warn_once(exc.cause, f"skipping frame: {exc}")
                continue
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            frame = PairFrame(msg.header, msg.encoding, rgb, stamp_ns)
            reason = pair_reset_reason(previous, frame, self._param("reset_gap_s"))
            if reason is not None:
                self._stats.count(f"pair resets: {reason}")
                self._warn_once(reason, f"pair state reset ({reason}); the next output comes with the next frame")
            first = previous if reason is None else None
            previous = frame
            if first is not None:
                self._process(frame, first, received)

    def _process(self, current: PairFrame, previous: PairFrame, received: float) -> None:
        """Outputs of ``current`` from infer_pair(current, previous); flow: current -> previous."""
        self.pipeline.mask_threshold = self._param("mask_threshold")
        self.pipeline.occlusion_threshold = self._param("occlusion_threshold")
        out = self.pipeline.infer_pair(current.rgb, previous.rgb)
        self._publish_outputs(current, out)
        self._stats.record(latency_ms=(time.monotonic() - received) * 1000.0, inference_ms=out.latency_ms)

    def _wanted(self, name: str) -> bool:
        return self._param(f"publish_{name}") and self._image_pubs[name].get_subscription_count() > 0

    def _publish_outputs(self, frame: PairFrame, out: PairOutputs) -> None:
        for name, encoding in OUTPUT_ENCODINGS.items():
            if self._wanted(name):  # visualisations are computed only for a subscriber
                encoded = encode_image(output_image(name, frame.rgb, out), encoding)
                self._image_pubs[name].publish(Image(header=frame.header, **vars(encoded)))
        info = self._camera_info
        if info is not None and self._param("publish_camera_info") and self._info_pub.get_subscription_count() > 0:
            height, width = frame.rgb.shape[:2]
            self._info_pub.publish(scale_camera_info(info, width, height, frame.header))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        counts, latency_ms, inference_ms = self._stats.snapshot()
        then, previous = self._last_status
        self._last_status = (now, counts)
        status = diagnostic_status(
            f"{self.get_fully_qualified_name()}: perception",
            counts,
            previous,
            now - then,
            latency_ms,
            inference_ms,
            facts={
                "backend": self.pipeline.backend.name,
                "device": self.pipeline.backend.device,
                "model": str(self.pipeline.model_path),
                "network size": "x".join(map(str, self.pipeline.network_size)),
            },
            worker_alive=self._worker.is_alive(),
        )
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=[status]))

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand) before the publishers go away."""
        self._slot.close()
        self._worker.join(timeout=30.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``perception_node [--ros-args ...]``; exit 2 with one line for bad parameters or model."""
    rclpy.init(args=args)
    node: PerceptionNode | None = None
    try:
        node = PerceptionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: a normal stop
    except (JointPerceptionError, ParameterException) as exc:
        print(f"perception_node: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 1 if node is not None and node.worker_error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
