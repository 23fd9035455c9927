"""ROS 2 managed node ``jointperception_lifecycle_node``: ``perception_node`` under lifecycle control.

Same parameters (config/perception.yaml), topics and /diagnostics as ``perception_node``; the
work is done by the same ``PerceptionWorker``. Drive it with ``ros2 lifecycle set`` (or the
``~/change_state`` service):
  unconfigured --configure--> inactive: checks the startup parameters and loads the model; a
      bad value or a model that does not load fails the transition (reason logged), the node
      stays unconfigured and can be configured again once the parameter is fixed
  inactive --activate--> active: subscribes to ``image`` / ``camera_info``, starts the worker,
      enables the output and /diagnostics publishers
  active --deactivate--> inactive: unsubscribes and stops the worker (no outputs while inactive)
  inactive --cleanup--> unconfigured: releases the pipeline and the publishers
  any --shutdown--> finalized: releases everything; the process then exits 0
The [startup] parameters can be set only while unconfigured; they take effect at configure.
"""
from __future__ import annotations

import sys

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.subscription import Subscription
from rclpy.task import Future
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, Image

from jointperception.errors import JointPerceptionError
from jointperception.ros.common import image_qos, transport_topic, warn_unknown_parameters
from jointperception.ros.node_main import run_node
from jointperception.ros.node_parts import PARAMETERS, parameter_error
from jointperception.ros.perception_node import load_pipeline
from jointperception.ros.perception_worker import PerceptionWorker

NODE_NAME = "jointperception_lifecycle_node"
# read-only in perception_node; here settable while unconfigured and applied by configure
SPIN_CHECK_S = 0.5  # longest wait of the executor before the shutdown transition is noticed
STARTUP = tuple(name for name, (_default, descriptor) in PARAMETERS.items() if descriptor.read_only)


def settable(descriptor: ParameterDescriptor) -> ParameterDescriptor:
    """``descriptor`` without read_only (the ranges stay)."""
    return ParameterDescriptor(
        description=f"{descriptor.description} [set while unconfigured]" if descriptor.read_only else descriptor.description,
        floating_point_range=descriptor.floating_point_range,
        integer_range=descriptor.integer_range,
    )


class PerceptionLifecycleNode(LifecycleNode):
    """The perception node as a managed node; ``finished`` completes at the shutdown transition."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.finished = Future()
        self.worker: PerceptionWorker | None = None  # from configure to cleanup
        self._inputs: list[Subscription] = []  # while active
        self._diagnostics_timer: Timer | None = None  # while active
        self.add_on_set_parameters_callback(self._validate)  # also checks the initial values
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, settable(descriptor))
        warn_unknown_parameters(self)

    def _param(self, name: str) -> object:
        return self.get_parameter(name).value

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        """Live parameters are checked on set; startup ones only while unconfigured, by configure."""
        for param in parameters:
            if param.name in STARTUP:
                if self.worker is not None:
                    return SetParametersResult(successful=False, reason=(
                        f"{param.name} takes effect at configure: set it while unconfigured (cleanup first)"))
                continue
            reason = parameter_error(param.name, param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the startup parameters, load the model, create the (disabled) publishers."""
        reasons = [reason for name in STARTUP if (reason := parameter_error(name, self._param(name))) is not None]
        if reasons:
            self.get_logger().error(f"configure failed: {'; '.join(reasons)}")
            return TransitionCallbackReturn.FAILURE
        try:
            pipeline = load_pipeline(self)
        except JointPerceptionError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.worker = PerceptionWorker(self, pipeline, self.create_lifecycle_publisher, image_qos(self._param("qos")),
                                       self._param("pipelined"))
        self.get_logger().info(f"configured: {self.worker.summary()}, qos {self._param('qos')}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, start the worker, then take frames."""
        result = super().on_activate(state)
        qos = image_qos(self._param("qos"))
        self.worker.start()
        msg_type, topic = transport_topic(self, "image", self._param("image_transport"))
        self._inputs = [self.create_subscription(msg_type, topic, self.worker.on_image, qos),
                        self.create_subscription(CameraInfo, "camera_info", self.worker.on_camera_info, qos),
                        self.create_subscription(Image, "~/object_mask", self.worker.on_object_mask, 10)]
        self._diagnostics_timer = self.create_timer(self._param("diagnostics_period_s"), self.worker.publish_diagnostics)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        self._release()
        self.finished.set_result(state.label)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and go back to unconfigured."""
        self.get_logger().error(f"transition from {state.label} raised; releasing the pipeline")
        self._stop_taking_frames()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_taking_frames(self) -> None:
        """Unsubscribe, stop /diagnostics and join the worker (it finishes the frame in hand)."""
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self.worker is not None:
            self.worker.stop()

    def _release(self) -> None:
        """Drop the pipeline and destroy the output publishers."""
        if self.worker is not None:
            for publisher in self.worker.publishers:
                self.destroy_lifecycle_publisher(publisher)
            self.worker = None

    def destroy_node(self) -> None:
        self._stop_taking_frames()
        super().destroy_node()


def spin_until_finished(node: PerceptionLifecycleNode) -> None:
    """Spin until the shutdown transition. Not ``rclpy.spin_until_future_complete``: this rclpy adds a
    done callback to the future at every wake-up (ros2/rclpy#1371), about 300 bytes per frame
    received that are never freed while the node runs (benchmarks/soak.py, docs/soak.md)."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not node.finished.done():
            executor.spin_once(timeout_sec=SPIN_CHECK_S)
    finally:
        executor.shutdown()


def main(args: list[str] | None = None) -> int:
    """``perception_lifecycle_node [--ros-args ...]``: runs until the shutdown transition or Ctrl-C;
    exit 2 with one line for a parameter of the wrong type or range, 1 if the worker failed."""
    return run_node(
        "perception_lifecycle_node", PerceptionLifecycleNode,
        spin_until_finished,
        lambda node: node.worker is not None and node.worker.error is not None, args)


if __name__ == "__main__":
    sys.exit(main())
