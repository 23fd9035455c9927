"""The soak bench's camera (benchmarks/soak.py starts it): a separate process that publishes a moving
synthetic scene as sensor_msgs/Image rgb8 on ``--topic`` at ``--rate-hz``, best effort, depth 1,
stamped with its wall clock plus ``--stamp-offset-s``, and takes fault commands on stdin, one a line:
  rate HZ         publish at HZ from now on (the 10x burst and its end)
  size WxH        frames of this size from the next one on (the resolution change)
  jump SECONDS    stamps SECONDS earlier from the next frame on (a backward time jump)
  malformed N     the next N frames malformed, cycling wrong step, wrong data length, unknown
                  encoding and zero size
Every command is acknowledged once applied (for malformed: once the last one is sent) with a line
``ack COMMAND at WALL_TIME`` on stdout; ``publishing at WALL_TIME`` marks the first frame sent,
which waits until a subscriber is matched. Runs until SIGINT (or SIGKILL, which is the point).

    python benchmarks/soak_camera.py [--topic /camera/image_raw] [--rate-hz 30] [--size 640x480] [--stamp-offset-s 0]
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from jointperception.data.image_msg import encode_image

SCENE_FRAMES = 32
SHIFT_PX = 2  # the scene moves this many pixels right per frame
MALFORMED = ("wrong step", "wrong data length", "unknown encoding", "zero size")


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.split("x"))
    return width, height


def scene(width: int, height: int, index: int) -> np.ndarray:
    """(height, width, 3) uint8: a fixed smooth texture moving SHIFT_PX per frame, a square moving against it."""
    rng = np.random.default_rng(width * 10_000 + height)
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:height, :width]
    frame = np.roll(texture, SHIFT_PX * index, axis=1)
    side = height // 4
    left = (width // 2 - SHIFT_PX * 2 * index) % (width - side)
    frame[height // 3:height // 3 + side, left:left + side] = (230, 40, 40)
    return frame


def scene_frames(width: int, height: int) -> list[Image]:
    """SCENE_FRAMES Images of the scene (encoded once, cycled by the publisher)."""
    return [Image(**vars(encode_image(scene(width, height, index), "rgb8"))) for index in range(SCENE_FRAMES)]


def malformed_image(kind: str, width: int, height: int) -> Image:
    """An Image the node must reject (counted in its /diagnostics as a bad frame)."""
    good = encode_image(np.zeros((height, width, 3), np.uint8), "rgb8")
    if kind == "wrong step":
        return Image(height=height, width=width, encoding="rgb8", step=width * 3 - 1, data=good.data)
    if kind == "wrong data length":
        return Image(height=height, width=width, encoding="rgb8", step=width * 3, data=good.data[: len(good.data) // 2])
    if kind == "unknown encoding":
        return Image(height=height, width=width, encoding="yuv999", step=width * 3, data=good.data)
    return Image(height=0, width=0, encoding="rgb8", step=0, data=b"")


def read_commands(commands: queue.Queue) -> None:
    """Thread: stdin lines into ``commands``."""
    for line in sys.stdin:
        if line.strip():
            commands.put(line.strip())


class Camera:
    """Pacing, the current size, stamp offset and pending malformed frames of the publisher."""

    def __init__(self, node: Node, topic: str, rate_hz: float, size: tuple[int, int], offset_s: float) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node = node
        self.publisher = node.create_publisher(Image, topic, qos)
        self.period_s = 1.0 / rate_hz
        self.size = size
        self.offset_s = offset_s
        self.malformed_left = 0
        self.malformed_ack: str | None = None
        self.index = 0
        self.frames = scene_frames(*size)

    def apply(self, command: str) -> None:
        """One stdin command; acknowledged here unless it is a malformed burst (acked once sent)."""
        name, _, value = command.partition(" ")
        if name == "rate":
            self.period_s = 1.0 / float(value)
        elif name == "size":
            self.size = parse_size(value)
            self.frames = scene_frames(*self.size)
        elif name == "jump":
            self.offset_s -= float(value)
        elif name == "malformed":
            self.malformed_left, self.malformed_ack = int(value), command
            return
        else:
            print(f"unknown command {command!r}", flush=True)
            return
        print(f"ack {command} at {time.time():.6f}", flush=True)

    def frame_msg(self) -> Image:
        """The next frame: one of the precomputed scene frames, or a malformed one."""
        if self.malformed_left:
            msg = malformed_image(MALFORMED[self.malformed_left % len(MALFORMED)], *self.size)
        else:
            msg = self.frames[self.index % len(self.frames)]
        msg.header.frame_id = "soak_camera"
        return msg

    def publish(self) -> None:
        msg = self.frame_msg()
        stamp = time.time() + self.offset_s
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp // 1), int(stamp % 1 * 1e9)
        self.publisher.publish(msg)
        self.index += 1
        if self.malformed_left:
            self.malformed_left -= 1
            if not self.malformed_left:
                print(f"ack {self.malformed_ack} at {time.time():.6f}", flush=True)


def run(camera: Camera, commands: queue.Queue) -> None:
    """Wait for a subscriber, then publish on a fixed period (a late frame shifts the schedule, no catch-up)."""
    while camera.publisher.get_subscription_count() == 0:
        time.sleep(0.05)
    print(f"publishing at {time.time():.6f}", flush=True)
    due = time.monotonic()
    while rclpy.ok():
        while not commands.empty():
            camera.apply(commands.get())
        camera.publish()
        due += camera.period_s
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            due = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="WxH")
    parser.add_argument("--stamp-offset-s", type=float, default=0.0, help="added to every stamp")
    args = parser.parse_args()
    rclpy.init()
    node = Node("soak_camera")
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    try:
        run(Camera(node, args.topic, args.rate_hz, args.size, args.stamp_offset_s), commands)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
