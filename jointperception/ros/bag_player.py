"""``bag_player BAG``: publish the camera topics (sensor_msgs/Image and CompressedImage) of a
rosbag2 bag (mcap or sqlite3).

Messages keep their headers (``--restamp``: stamp = publish wall time) and go out in log-time
order at the bag's timing scaled by ``--rate``, or at a fixed ``--rate-hz`` (``--loop`` keeps the
period across passes: ``play_schedule``); ``--ros-args -r
FROM:=TO`` publishes topic FROM of the bag as TO. Lock-step mode
(``--lockstep-topic``) is for deterministic evaluation: after each frame of the first topic the
player waits until an Image stamped like it arrived on the lock-step topic (or the timeout
passed) before publishing the next one; a frame without a predecessor in the pass (the first)
yields no output from the perception node, so the player only pauses ``--first-frame-wait`` s.
Exits 0 at the end; a missing or corrupt bag prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import array
import sys
import time
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from jointperception.data.bags import (
    COMPRESSED_IMAGE_TYPE,
    CompressedImageRecord,
    FrameRecord,
    camera_topics,
    read_image_topics,
    require_image_topics,
)
from jointperception.errors import InputError, JointPerceptionError
from jointperception.ros.common import QOS_CHOICES, image_qos
from jointperception.ros.node_main import run_node
from jointperception.ros.play_schedule import PlaySchedule

SPIN_STEP_S = 0.02  # longest executor wait while pacing or waiting for lock-step outputs
LATE_S = 0.05  # a message due longer ago than this shifts the schedule to now
FLUSH_S = 2.0  # at the end: longest wait for reliable subscribers to acknowledge the last messages
LINGER_S = 0.3  # at the end: time best-effort transports get before the publishers go away


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bag_player", description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="rosbag2 bag (folder, .mcap or .db3)")
    parser.add_argument("--topics", nargs="+", default=None,
                        help="camera topics to play, Image or CompressedImage (default: all of them)")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=float, default=1.0, help="bag timing scaled by this factor (2 = twice as fast)")
    pacing.add_argument("--rate-hz", type=float, default=None, help="fixed message rate instead of the bag timing")
    parser.add_argument("--loop", action="store_true", help="start again at the end of the bag")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds of playing")
    parser.add_argument("--restamp", action="store_true", help="header stamp = publish wall time")
    parser.add_argument("--qos", choices=QOS_CHOICES, default="sensor_data", help="image QoS (depth 1)")
    parser.add_argument("--wait-subscribers", type=int, default=0,
                        help="start once every played topic has this many subscribers")
    parser.add_argument("--wait-timeout", type=float, default=60.0, help="give up waiting after this many s")
    parser.add_argument("--delay", type=float, default=0.0, help="pause (s) before the first message")
    parser.add_argument("--lockstep-topic", default=None, help="Image topic answering each frame (lock-step mode)")
    parser.add_argument("--lockstep-timeout", type=float, default=10.0, help="longest wait for an answer (s)")
    parser.add_argument("--first-frame-wait", type=float, default=0.3,
                        help="lock-step pause after the first frame of a pass, which gets no answer (s)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or (args.rate_hz is not None and args.rate_hz <= 0):
        parser.error("--rate and --rate-hz must be > 0")
    return args


def _message(record: FrameRecord, stamp: Time) -> Image | CompressedImage:
    """The message of a bag record, stamped ``stamp`` (array.array data: no per-byte check)."""
    header = Header(stamp=stamp, frame_id=record.frame_id)
    data = array.array("B", record.data.tobytes())
    if isinstance(record, CompressedImageRecord):
        return CompressedImage(header=header, format=record.format, data=data)
    return Image(header=header, height=record.height, width=record.width, encoding=record.encoding,
                 is_bigendian=record.is_bigendian, step=record.step, data=data)


class BagPlayer(Node):
    """Publishes one pass of the bag per ``play_pass`` call; lock-step answers are kept by stamp."""

    def __init__(self, args: argparse.Namespace, topics: dict[str, str]) -> None:
        """``topics``: topic -> message type name (sensor_msgs/msg/Image or CompressedImage)."""
        super().__init__("bag_player")
        self.args = args
        self.topics = list(topics)
        qos = image_qos(args.qos)
        self.publishers_by_topic = {
            topic: self.create_publisher(CompressedImage if msgtype == COMPRESSED_IMAGE_TYPE else Image, topic, qos)
            for topic, msgtype in topics.items()}
        self._spinner = SingleThreadedExecutor()
        self._spinner.add_node(self)
        self.answered: set[tuple[int, int]] = set()
        if args.lockstep_topic:
            answer_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=16, reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(Image, args.lockstep_topic, self._on_answer, answer_qos)
        self.published = 0
        self.timeouts = 0
        self.deadline = float("inf")
        self.schedule: PlaySchedule | None = None  # from the first pass on; --loop keeps its period across passes

    def destroy_node(self) -> None:
        """The spinner's guard conditions go first, while the node and the context exist."""
        self._spinner.shutdown()
        super().destroy_node()

    def _on_answer(self, msg: Image) -> None:
        self.answered.add((msg.header.stamp.sec, msg.header.stamp.nanosec))

    def spin_until(self, done: object, until: float) -> bool:
        """Spin until ``done()`` (True) or monotonic time ``until`` (False)."""
        while not done():
            now = time.monotonic()
            if now >= until:
                return False
            self._spinner.spin_once(timeout_sec=min(SPIN_STEP_S, until - now))
        return True

    def flush(self) -> None:
        """Let the last messages reach the subscribers before the process exits: reliable
        publishers wait for every acknowledgement (up to FLUSH_S), best-effort ones linger."""
        if self.args.qos == "reliable":
            for publisher in self.publishers_by_topic.values():
                publisher.wait_for_all_acked(Duration(seconds=FLUSH_S))
        self.spin_until(lambda: False, time.monotonic() + LINGER_S)

    def wait_for_graph(self) -> None:
        """Wait for ``--wait-subscribers`` on every played topic and a lock-step publisher, then ``--delay``."""
        needed = self.args.wait_subscribers

        def ready() -> bool:
            subscribed = all(pub.get_subscription_count() >= needed for pub in self.publishers_by_topic.values())
            answering = not self.args.lockstep_topic or self.count_publishers(self.args.lockstep_topic) > 0
            return subscribed and answering

        if not self.spin_until(ready, time.monotonic() + self.args.wait_timeout):
            raise InputError(f"no {needed} subscriber(s) on {', '.join(self.topics)} (and a publisher on the "
                             f"lock-step topic) within {self.args.wait_timeout} s")
        self.spin_until(lambda: False, time.monotonic() + self.args.delay)

    def play_pass(self) -> bool:
        """Publish the bag once; False when ``--duration`` ran out or ROS shut down."""
        if self.schedule is None:
            self.schedule = PlaySchedule(time.monotonic(), self.args.rate, self.args.rate_hz)
        else:
            self.schedule.next_pass()
        first_of_pass = True
        for index, (topic, log_time, record) in enumerate(read_image_topics(self.args.bag, self.topics)):
            due = self.schedule.due(index, log_time)
            if (late := time.monotonic() - due) > LATE_S:  # behind (lock-step, a busy CPU): no catch-up burst
                self.schedule.shift(late)
                due += late
            if self.spin_until(lambda: not rclpy.ok(), min(due, self.deadline)) or due > self.deadline:
                return False
            stamp = self.get_clock().now().to_msg() if self.args.restamp else \
                Time(sec=record.stamp_ns // 1_000_000_000, nanosec=record.stamp_ns % 1_000_000_000)
            self.publishers_by_topic[topic].publish(_message(record, stamp))
            self.published += 1
            if self.args.lockstep_topic and topic == self.topics[0]:
                self._lockstep(stamp, first_of_pass)
                first_of_pass = False
        return True

    def _lockstep(self, stamp: Time, first: bool) -> None:
        if first:
            self.spin_until(lambda: False, time.monotonic() + self.args.first_frame_wait)
            return
        key = (stamp.sec, stamp.nanosec)
        if not self.spin_until(lambda: key in self.answered, time.monotonic() + self.args.lockstep_timeout):
            self.timeouts += 1
            self.get_logger().warning(f"no answer on {self.args.lockstep_topic} for stamp {key[0]}.{key[1]:09d}")
        self.answered.discard(key)


def topics_to_play(args: argparse.Namespace) -> dict[str, str]:
    """Topic -> message type name of ``--topics`` after checking them, or of every camera topic of
    the bag (Image or CompressedImage); errors name the bag."""
    names = camera_topics(args.bag) if args.topics is None else list(args.topics)
    if not names:
        raise InputError(f"{args.bag}: no camera topic (sensor_msgs/Image or CompressedImage) in the bag")
    available = require_image_topics(args.bag, names)
    return {name: available[name].msgtype for name in names}


def main(argv: list[str] | None = None) -> int:
    """``bag_player BAG [options] [--ros-args ...]``; exit 0 at the end, 2 for a bad bag or option."""
    argv = sys.argv if argv is None else argv
    args = parse_args(remove_ros_args(argv)[1:])
    try:
        topics = topics_to_play(args)
    except JointPerceptionError as exc:
        print(f"bag_player: error: {exc}", file=sys.stderr)
        return 2

    def play(player: BagPlayer) -> None:
        player.wait_for_graph()
        if args.duration is not None:
            player.deadline = time.monotonic() + args.duration
        while player.play_pass() and args.loop:
            pass
        player.flush()
        print(f"bag_player: published {player.published} messages of {', '.join(topics)}"
              + (f", {player.timeouts} lock-step timeouts" if args.lockstep_topic else ""), flush=True)

    return run_node("bag_player", lambda: BagPlayer(args, topics), play, args=argv)


if __name__ == "__main__":
    sys.exit(main())
