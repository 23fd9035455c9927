"""The test side of a perception node under test: frames in with chosen stamps, every output and
the node's /diagnostics status out, over real DDS from a ``Probe`` (see ros_helpers)."""
from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import Probe, open_probe
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from jointperception.config import ModelConfig
from jointperception.data.compressed_image import encode_compressed
from jointperception.data.image_msg import decode_image, encode_image
from jointperception.models import build_model
from jointperception.models.weights import save_weights

HEIGHT, WIDTH = 64, 96  # frame size the tests send unless they say otherwise
OUTPUTS = {"mask": "mono8", "flow": "32FC2", "occlusion": "mono8", "motion_layers": "mono8",
           "flow_color": "rgb8", "overlay": "rgb8"}
WAIT = 60.0  # generous bound for 2 busy cores; a passing run takes a few seconds
RESEND_S = 5.0  # an idempotent request without an answer is sent again after this long
REPLY_MATCH_S = 0.3  # spin after service_is_ready so the server can match this client's reply reader


def save_untrained_model(path: Path) -> Path:
    """A small untrained jointnet (default ModelConfig) saved as .safetensors at ``path``."""
    return save_weights(path, build_model(ModelConfig()), ModelConfig(), {})


def stamp_msg(seconds: float) -> Time:
    return Time(sec=int(seconds), nanosec=round((seconds % 1.0) * 1e9))


def stamp_key(stamp: Time) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


def random_frame(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """(height, width, 3) uint8 noise, the same for the same seed."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def decode_msg(msg: Image) -> np.ndarray:
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


class Link:
    """The probe's publishers into ``<camera>/image_raw`` (``compression`` jpeg or png: CompressedImage
    on ``<camera>/image_raw/compressed``) and ``<camera>/camera_info``, and its subscriptions to the
    outputs of node ``node`` (fully qualified name) and to /diagnostics."""

    def __init__(self, probe: Probe, node: str = "/jointperception_node", camera: str = "/cam",
                 compression: str | None = None) -> None:
        self.probe = probe
        self.node_name = node
        self.compression = compression
        if compression is None:
            self.image_pub = probe.node.create_publisher(Image, f"{camera}/image_raw", qos_profile_sensor_data)
        else:
            self.image_pub = probe.node.create_publisher(CompressedImage, f"{camera}/image_raw/compressed",
                                                         qos_profile_sensor_data)
        self.info_pub = probe.node.create_publisher(CameraInfo, f"{camera}/camera_info", qos_profile_sensor_data)
        self.received: dict[str, list] = defaultdict(list)
        self.subs = [
            probe.node.create_subscription(Image, f"{node}/{name}", lambda m, n=name: self.received[n].append(m),
                                           qos_profile_sensor_data)
            for name in OUTPUTS
        ]
        self.subs.append(probe.node.create_subscription(CameraInfo, f"{node}/camera_info",
                                                        self.received["camera_info"].append, qos_profile_sensor_data))
        self.diagnostics: dict[str, str] = {}
        probe.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.node_name}:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def count(self, key: str) -> int:
        return int(self.diagnostics.get(key, "0"))

    def connected(self) -> bool:
        return (self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0
                and all(sub.get_publisher_count() > 0 for sub in self.subs) and bool(self.diagnostics))

    def send(self, seconds: float, rgb: np.ndarray | None = None, encoding: str = "rgb8",
             fields: dict[str, object] | None = None) -> None:
        """Publish a frame stamped ``seconds``: ``rgb`` encoded as ``encoding`` (compressed by the
        link's codec when it has one), or the message's ``fields``."""
        if self.compression is not None:
            msg = CompressedImage(**(vars(encode_compressed(rgb, self.compression)) if fields is None else fields))
        else:
            msg = Image(**(vars(encode_image(rgb, encoding)) if fields is None else fields))
        msg.header.stamp, msg.header.frame_id = stamp_msg(seconds), "cam_optical"
        self.image_pub.publish(msg)

    def output_for(self, seconds: float, names: tuple[str, ...] = tuple(OUTPUTS)) -> dict[str, object] | None:
        """The messages of ``names`` stamped ``seconds``, once each has arrived, else None."""
        found = {}
        for name in names:
            match = [m for m in self.received[name] if stamp_key(m.header.stamp) == stamp_key(stamp_msg(seconds))]
            if not match:
                return None
            found[name] = match[-1]
        return found

    def expect_output(self, seconds: float, names: tuple[str, ...] = tuple(OUTPUTS)) -> dict[str, object]:
        assert self.probe.spin_until(lambda: self.output_for(seconds, names) is not None, WAIT), \
            f"no outputs stamped {seconds} within {WAIT} s; diagnostics {self.diagnostics}"
        return self.output_for(seconds, names)

    def expect_count(self, key: str, at_least: int) -> None:
        assert self.probe.spin_until(lambda: self.count(key) >= at_least, WAIT), \
            f"diagnostics {key!r} stayed below {at_least}: {self.diagnostics}"


@contextmanager
def linked(started: tuple[subprocess.Popen, Path], domain_id: int, **link_options: object) -> Iterator[Link]:
    """A Link (``link_options``: node, camera, compression) to the node process ``started`` =
    (process, log), once every topic is matched; fails with the node's log when it does not answer.
    The probe closes on exit."""
    probe = open_probe(domain_id)
    try:
        link = Link(probe, **link_options)
        process, log = started
        connected = probe.spin_until(lambda: link.connected() or process.poll() is not None, WAIT)
        assert connected and process.poll() is None, f"node not reachable; its log:\n{log.read_text()}"
        yield link
    finally:
        probe.close()


def send_pair(link: Link, first: float, frame: np.ndarray) -> tuple[float, dict[str, object]]:
    """Frames stamped ``first`` and ``first + 0.1`` (``frame``, then ``frame`` moved 3 px right);
    returns the second stamp and its outputs. A first frame has no output to wait for, so a pair
    whose first frame was not taken in time (a loaded machine) is sent again one second later."""
    deadline = time.monotonic() + WAIT
    while True:
        second = first + 0.1
        link.send(first, frame)
        link.probe.spin_for(0.2)
        link.send(second, np.roll(frame, 3, axis=1))
        if link.probe.spin_until(lambda stamp=second: link.output_for(stamp) is not None, 10.0):
            return second, link.output_for(second)
        assert time.monotonic() < deadline, f"no outputs within {WAIT} s; diagnostics {link.diagnostics}"
        first += 1.0


def call_service(probe: Probe, service_type: type, name: str, request: object, *, idempotent: bool = True) -> object:
    """The response of service ``name`` to ``request``, waiting up to WAIT for it and for the answer.

    ``service_is_ready`` only covers the request path: a reply sent before the server has matched
    this client's reply reader is lost. So the call waits a moment after readiness and, when the
    request is ``idempotent`` (a query, setting a parameter), sends it again every RESEND seconds
    without an answer; a state transition is sent once.
    """
    client = probe.node.create_client(service_type, name)
    try:
        assert probe.spin_until(client.service_is_ready, WAIT), f"{name} not available"
        probe.spin_for(REPLY_MATCH_S)
        deadline = time.monotonic() + WAIT
        while True:
            future = client.call_async(request)
            if probe.spin_until(future.done, RESEND_S if idempotent else WAIT):
                return future.result()
            assert idempotent and time.monotonic() < deadline, f"{name} did not answer within {WAIT} s"
    finally:
        probe.node.destroy_client(client)
