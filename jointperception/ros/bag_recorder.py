"""``bag_recorder OUT --topics T[:TYPE] ...``: record topics into a new mcap rosbag2 bag.

TYPE is Image, CompressedImage, CameraInfo or DiagnosticArray (default: DiagnosticArray for
/diagnostics, CameraInfo for a name ending in camera_info, CompressedImage for one ending in
/compressed, else Image). Messages are written as received
(serialized bytes, headers unchanged) with the receive wall time as log time. Stops on
SIGINT / SIGTERM, after ``--idle-timeout`` s without a message, or after ``--max-messages``,
and closes the bag so it stays readable. It prints ``bag_recorder: matched TOPIC`` once a topic
has a publisher, so a script can start a player only when the recorder listens. Exit 2 with one
line for a bad option or output path.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from jointperception.data.bags import BAG_VERSION, typestore
from jointperception.errors import InputError, JointPerceptionError
from jointperception.ros.common import QOS_CHOICES
from jointperception.ros.node_main import normal_stops

# short name -> (rclpy type, rosbag2 type name)
MESSAGE_TYPES = {
    "Image": (Image, "sensor_msgs/msg/Image"),
    "CompressedImage": (CompressedImage, "sensor_msgs/msg/CompressedImage"),
    "CameraInfo": (CameraInfo, "sensor_msgs/msg/CameraInfo"),
    "DiagnosticArray": (DiagnosticArray, "diagnostic_msgs/msg/DiagnosticArray"),
}
RECORD_DEPTH = 16  # a short queue absorbs bursts


def record_qos(name: str) -> QoSProfile:
    """'sensor_data': best effort, matches reliable and best-effort publishers; 'reliable': every
    message of a reliable publisher arrives (a best-effort publisher is not matched)."""
    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RECORD_DEPTH, reliability=reliability)


def topic_type(spec: str) -> tuple[str, str]:
    """'TOPIC[:TYPE]' -> (topic, short type name); the default type follows the topic name."""
    topic, _, name = spec.partition(":")
    if not name:
        name = "DiagnosticArray" if topic == "/diagnostics" else \
            "CameraInfo" if topic.endswith("camera_info") else \
            "CompressedImage" if topic.endswith("/compressed") else "Image"
    if name not in MESSAGE_TYPES:
        raise InputError(f"{spec}: type must be one of {', '.join(MESSAGE_TYPES)}")
    return topic, name


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bag_recorder", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    parser.add_argument("--topics", nargs="+", required=True, metavar="TOPIC[:TYPE]", help="topics to record")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many s without a message (counted from the start)")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--qos", choices=QOS_CHOICES, default="sensor_data",
                        help="sensor_data (best effort, records any publisher) or reliable (loses nothing of a "
                        "reliable publisher)")
    return parser.parse_args(argv)


class BagRecorder(Node):
    """Writes every message of the subscribed topics to an open rosbags Writer."""

    def __init__(self, writer: Writer, topics: list[tuple[str, str]], qos: str = "sensor_data") -> None:
        super().__init__("bag_recorder")
        self._writer = writer
        self.counts: dict[str, int] = {}
        self.last_message = time.monotonic()
        self._unmatched = {}  # topic -> subscription without a publisher yet
        for topic, name in topics:
            msg_type, msgtype = MESSAGE_TYPES[name]
            connection = writer.add_connection(topic, msgtype, typestore=typestore())
            self.counts[topic] = 0
            self._unmatched[topic] = self.create_subscription(
                msg_type, topic, lambda raw, t=topic, c=connection: self._on_message(t, c, raw), record_qos(qos), raw=True)

    def announce_matches(self) -> None:
        """Print 'bag_recorder: matched TOPIC' once a topic has a publisher (scripts wait for it)."""
        for topic, subscription in list(self._unmatched.items()):
            if subscription.get_publisher_count() > 0:
                print(f"bag_recorder: matched {topic}", flush=True)
                del self._unmatched[topic]

    def _on_message(self, topic: str, connection: object, raw: bytes) -> None:
        """Log time = receive wall time (ns); the CDR bytes are written as they came."""
        self._writer.write(connection, time.time_ns(), raw)
        self.counts[topic] += 1
        self.last_message = time.monotonic()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def record(args: argparse.Namespace, topics: list[tuple[str, str]]) -> dict[str, int]:
    """Record until a stop condition; the bag is closed (metadata written) also after an error."""
    if args.out.exists():
        raise InputError(f"{args.out}: output bag exists already; remove it or choose another path")
    writer = Writer(args.out, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    try:
        writer.open()
    except WriterError as exc:
        raise InputError(f"{args.out}: cannot create the bag ({exc})") from exc
    recorder: BagRecorder | None = None
    executor = SingleThreadedExecutor()  # its own, not rclpy's global one a shutdown discards
    try:
        with normal_stops():  # Ctrl-C or SIGTERM ends the recording like a stop condition
            recorder = BagRecorder(writer, topics, args.qos)
            executor.add_node(recorder)
            print(f"bag_recorder: recording {', '.join(t for t, _ in topics)} to {args.out}", flush=True)
            while rclpy.ok():
                executor.spin_once(timeout_sec=0.05)
                recorder.announce_matches()
                if args.max_messages is not None and recorder.total >= args.max_messages:
                    break
                if args.idle_timeout is not None and time.monotonic() - recorder.last_message > args.idle_timeout:
                    break
    finally:
        executor.shutdown()  # its guard conditions go before the node and the context, not at a later collection
        writer.close()
        if recorder is not None:
            recorder.destroy_node()
    return dict(recorder.counts) if recorder is not None else {}


def main(argv: list[str] | None = None) -> int:
    """``bag_recorder OUT --topics ... [--ros-args ...]``; exit 0 after a stop, 2 for bad input."""
    argv = sys.argv if argv is None else argv
    args = parse_args(remove_ros_args(argv)[1:])
    try:
        topics = [topic_type(spec) for spec in args.topics]
    except JointPerceptionError as exc:
        print(f"bag_recorder: error: {exc}", file=sys.stderr)
        return 2
    rclpy.init(args=argv)
    try:
        counts = record(args, topics)
    except JointPerceptionError as exc:
        print(f"bag_recorder: error: {exc}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    print(f"bag_recorder: wrote {args.out}: " + ", ".join(f"{t} ({n})" for t, n in counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
