"""ROS 2 node ``jointperception_node``: camera frames in; mask, flow, occlusion and motion layers out.

Topics (README, ROS 2), every output with the header of the newest input frame:
  in:  ``image`` (sensor_msgs/Image, remap it; with ``image_transport:=compressed``
       sensor_msgs/CompressedImage on ``image/compressed``), ``camera_info`` (optional),
       ``~/object_mask`` (mono8, stamped like a frame: follow that object; ``ros.object_mask``)
  out: ``~/mask`` mono8, ``~/flow`` 32FC2 (per pixel of the newest frame: its displacement to the
       previous frame, pixels), ``~/occlusion`` mono8 (pixels of the newest frame not visible in
       the previous one), ``~/motion_layers`` mono8, ``~/flow_color`` rgb8, ``~/overlay`` rgb8,
       ``~/camera_info`` (scaled to the output size = input size); ``/diagnostics`` at 1 Hz.
The subscription callback only fills a latest-only slot; worker threads (``PerceptionWorker``)
convert, pair, run the network and publish, so the executor never blocks. Outputs are computed only
when subscribed. ``perception_lifecycle_node`` is the managed variant of this node.
"""
from __future__ import annotations

import sys

import rclpy
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from jointperception.ros.common import image_qos, transport_topic, warn_unknown_parameters
from jointperception.ros.node_main import run_node
from jointperception.ros.node_parts import PARAMETERS, parameter_error
from jointperception.ros.perception_worker import PerceptionWorker
from jointperception.runtime.pipeline import PerceptionPipeline

NODE_NAME = "jointperception_node"


def load_pipeline(node: Node) -> PerceptionPipeline:
    """The pipeline the node's startup parameters describe (threads, model, backend, device, size)."""
    def param(name: str) -> object:
        return node.get_parameter(name).value

    if param("threads") > 0:
        torch.set_num_threads(param("threads"))
    size = (param("network_width"), param("network_height"))
    threads = param("threads") or None
    return PerceptionPipeline.from_model_file(param("model") or None, param("backend"), param("device"), size,
                                              threads=threads, precision=param("precision"))


class PerceptionNode(Node):
    """Pairs each frame with the previous one and publishes the pipeline outputs of the newest."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.add_on_set_parameters_callback(self._validate)  # also checks the initial values
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        warn_unknown_parameters(self)
        qos_name = self.get_parameter("qos").value
        qos = image_qos(qos_name)
        self.worker = PerceptionWorker(self, load_pipeline(self), self.create_publisher, qos,
                                       self.get_parameter("pipelined").value)
        transport = self.get_parameter("image_transport").value
        msg_type, topic = transport_topic(self, "image", transport)
        self.create_subscription(msg_type, topic, self.worker.on_image, qos)
        self.create_subscription(CameraInfo, "camera_info", self.worker.on_camera_info, qos)
        self.create_subscription(Image, "~/object_mask", self.worker.on_object_mask, 10)  # ros/object_mask.py
        self.create_timer(self.get_parameter("diagnostics_period_s").value, self.worker.publish_diagnostics)
        self.worker.start()
        self.get_logger().info(f"{self.worker.summary()}, qos {qos_name}, input {transport} on {self.resolve_topic_name(topic)}")

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reject what the descriptors cannot express: choices, device names, missing files."""
        for param in parameters:
            reason = parameter_error(param.name, param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand) before the publishers go away."""
        self.worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``perception_node [--ros-args ...]``; exit 2 with one line for bad parameters or model,
    1 if the inference worker failed."""
    return run_node("perception_node", PerceptionNode, rclpy.spin, lambda node: node.worker.error is not None, args)


if __name__ == "__main__":
    sys.exit(main())
