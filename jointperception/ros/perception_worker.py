"""The part of the perception nodes that does the work, shared by ``perception_node`` and
``perception_lifecycle_node``: a latest-only frame slot filled by the image callback, worker
threads that convert, pair and run the pipeline, the output publishers and /diagnostics.

One worker thread converts, pairs, runs the pipeline and publishes. With the parameter
``pipelined`` there are two stages, each its own thread: the network thread takes the newest
frame, converts and pairs it and runs ``PerceptionPipeline.run_network``; it hands the pass over
(one at most waiting) to the publish thread, which runs ``finish`` and publishes. So the network of
pair t + 1 runs while pair t is refined, segmented and published: more frames per second, each one
later (on 2 CPU cores the two stages slow each other; README: node benchmark). Outputs are the
same either way: each pass carries the settings it started with, and the mask memory is only
touched by the publish thread, in frame order.

The node owns the subscriptions and decides when the worker runs; the worker reads the live
parameters (thresholds, pre-alignment, mask memory, rate limit, reset gap, publish toggles) from the node on every frame.
"""
from __future__ import annotations

import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from jointperception.data.compressed_image import compressed_msg_to_rgb, encode_compressed
from jointperception.data.image_msg import ImageConversionError, encode_image, image_msg_to_rgb
from jointperception.errors import InputError
from jointperception.ros.node_parts import FrameSlot, RunningStats, diagnostic_status
from jointperception.ros.object_mask import ObjectMaskInbox, object_mask_from_fields
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.object_memory import ObjectMemory, check_object_mask
from jointperception.runtime.pipeline import NetworkPass, PairOutputs, PerceptionPipeline
from jointperception.runtime.stream import OUTPUT_ENCODINGS, PairFrame, output_image, pair_reset_reason

CreatePublisher = Callable[..., Publisher]  # Node.create_publisher or create_lifecycle_publisher
# outputs also offered as CompressedImage on ~/<name>/compressed (flow, 32FC2, has no image codec):
# masks and layer ids lossless, the pictures as JPEG
COMPRESSED_OUTPUT_CODECS = {"mask": "png", "occlusion": "png", "motion_layers": "png", "flow_color": "jpeg",
                            "overlay": "jpeg"}
HANDOFF_POLL_S = 0.1  # how often a network thread waiting on the publish thread checks that it still runs


@dataclass(frozen=True)
class PendingPair:
    """A pair between the two stages: the newest frame, its network pass, when the frame arrived
    (time.monotonic()), and the mask memory's weight and whether it starts afresh here."""

    frame: PairFrame
    network_pass: NetworkPass
    received: float
    memory_weight: float
    reset_memory: bool
    previous_stamp_ns: int  # the frame the newest is paired with (matches an ~/object_mask)


def frame_msg_to_rgb(msg: Image | CompressedImage, max_pixels: int) -> tuple[np.ndarray, str]:
    """A camera frame message -> ((H, W, 3) uint8 RGB, what marks its stream: the Image encoding or
    the CompressedImage format); raises ImageConversionError with a cause (OVERSIZED for a
    compressed frame whose header declares more than ``max_pixels``)."""
    if isinstance(msg, CompressedImage):
        return compressed_msg_to_rgb(msg, max_pixels), msg.format
    return image_msg_to_rgb(msg), msg.encoding


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


class PerceptionWorker:
    """Pairs each frame with the previous one and publishes the pipeline outputs of the newest.

    ``create_publisher`` makes the output and /diagnostics publishers (``publishers`` lists them);
    ``start`` / ``stop`` run and join the worker threads, which may be started again after a stop
    (the pair state starts afresh; the counters carry on). ``pipelined``: two threads (network,
    publish) or one doing both.
    """

    def __init__(self, node: Node, pipeline: PerceptionPipeline, create_publisher: CreatePublisher,
                 qos: QoSProfile, pipelined: bool = False) -> None:
        self.node = node
        self.pipeline = pipeline
        self.pipelined = pipelined
        self.error: BaseException | None = None
        self._stats = RunningStats()
        self._last_status: tuple[float, Counter[str]] = (time.monotonic(), Counter())
        self._slot = FrameSlot()
        self._handoff: queue.Queue[PendingPair | None] = queue.Queue(maxsize=1)
        self._threads: list[threading.Thread] = []
        self._memory = MaskMemory(0.0)  # the published mask carried along the flow; publish stage only
        self._object = ObjectMemory()  # the object of an ~/object_mask, followed instead; publish stage only
        self._object_masks = ObjectMaskInbox()
        self._camera_info: CameraInfo | None = None
        self._logged_causes: set[str] = set()
        self._image_pubs = {name: create_publisher(Image, f"~/{name}", qos) for name in OUTPUT_ENCODINGS}
        self._compressed_pubs = {name: create_publisher(CompressedImage, f"~/{name}/compressed", qos)
                                 for name in COMPRESSED_OUTPUT_CODECS}
        self._info_pub = create_publisher(CameraInfo, "~/camera_info", qos)
        self._diagnostics_pub = create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.publishers = [*self._image_pubs.values(), *self._compressed_pubs.values(), self._info_pub,
                           self._diagnostics_pub]

    def summary(self) -> str:
        """One log line: model, backend, device, network size."""
        backend = self.pipeline.backend
        width, height = self.pipeline.network_size
        return f"model {self.pipeline.model_path}, backend {backend.name} on {backend.device}, network {width}x{height}"

    def start(self) -> None:
        self._slot = FrameSlot()
        self._handoff = queue.Queue(maxsize=1)
        self._memory = MaskMemory(self._param("mask_memory"))
        self._object = ObjectMemory()
        stages = [("perception_network", self._serve)]
        if self.pipelined:
            stages.append(("perception_publish", self._finish_handed_over))
        self._threads = [threading.Thread(target=self._work, args=(stage,), name=name, daemon=True)
                         for name, stage in stages]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking frames; the worker finishes the frames in hand before this returns."""
        self._slot.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def on_image(self, msg: Image | CompressedImage) -> None:
        """Executor thread: keep only the newest frame; a frame it replaces is a stale drop."""
        self._stats.count("received")
        if self._slot.put((msg, time.monotonic())):
            self._stats.count("dropped: stale")

    def on_object_mask(self, msg: Image) -> None:
        """Executor thread: the object to follow from the frame with this stamp (ros.object_mask)."""
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        try:
            mask = object_mask_from_fields(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                                           msg.data, stamp_ns)
        except ImageConversionError as exc:
            self._stats.count(f"object mask: bad {exc.cause}")
            self.node.get_logger().warning(f"ignoring object mask stamped {stamp_ns} ns: {exc}")
            return
        self._stats.count("object mask: received")
        if self._object_masks.put(mask):
            self._stats.count("object mask: replaced before its frame")

    def on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _param(self, name: str) -> object:
        return self.node.get_parameter(name).value

    def _warn_once(self, cause: str, text: str) -> None:
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            self.node.get_logger().warning(f"{text} [{cause}; logged once, counted in /diagnostics]")

    def _work(self, stage: Callable[[], None]) -> None:
        """Worker thread body running ``stage``. An error stops the node (exit code 1) rather than
        leave it deaf; an error once the context is shut down (Ctrl-C while publishing) is the normal stop."""
        try:
            stage()
        except Exception as exc:
            if not self.node.context.ok():
                return
            self.error = exc
            self.node.get_logger().fatal(f"perception worker stopped: {exc!r}")
            self.node.context.try_shutdown()
            raise

    def _serve(self) -> None:
        """Network stage: the network pass of every pair, handed on (or finished here when not pipelined)."""
        try:
            for pending in self._network_passes():
                if not self.pipelined:
                    self._finish(pending)
                elif not self._hand_over(pending):
                    return
        finally:
            if self.pipelined:
                self._hand_over(None)  # the publish stage ends after what is queued

    def _network_passes(self) -> Iterator[PendingPair]:
        """Take the newest frame, convert, pair with the previous one and run the network, until
        the slot closes; bad frames, rate-limit drops and pair resets are counted here."""
        previous: PairFrame | None = None
        reset_memory = True
        last_start = -float("inf")
        while (item := self._slot.take()) is not None:
            msg, received = item
            max_rate = self._param("max_rate_hz")
            if max_rate > 0 and received - last_start < 1.0 / max_rate:
                self._stats.count("dropped: rate_limit")
                continue
            last_start = received
            try:
                rgb, encoding = frame_msg_to_rgb(msg, self._param("max_pixels"))
            except ImageConversionError as exc:
                self._stats.count(f"bad: {exc.cause}")
                self._warn_once(exc.cause, f"skipping frame: {exc}")
                continue
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            frame = PairFrame(msg.header, encoding, rgb, stamp_ns)
            reason = pair_reset_reason(previous, frame, self._param("reset_gap_s"))
            if reason is not None:
                self._stats.count(f"pair resets: {reason}")
                self._warn_once(reason, f"pair state reset ({reason}); the next output comes with the next frame")
                reset_memory = True
            first = previous if reason is None else None
            previous = frame
            if first is not None:
                yield self._run_network(frame, first, received, reset_memory)
                reset_memory = False

    def _run_network(self, current: PairFrame, previous: PairFrame, received: float, reset_memory: bool) -> PendingPair:
        """Network pass of (current, previous) with the live parameters; flow: current -> previous."""
        self.pipeline.mask_source = self._param("mask_source")
        self.pipeline.max_layers = self._param("num_layers")
        self.pipeline.mask_threshold = self._param("mask_threshold")
        self.pipeline.occlusion_threshold = self._param("occlusion_threshold")
        self.pipeline.prealign = self._param("prealign")
        self.pipeline.refine = self._param("refine_flow")
        self.pipeline.refined_layers = self._param("refined_layers")
        network_pass = self.pipeline.run_network(current.rgb, previous.rgb)
        return PendingPair(current, network_pass, received, self._param("mask_memory"), reset_memory,
                           previous.stamp_ns)

    def _hand_over(self, pending: PendingPair | None) -> bool:
        """Queue ``pending`` (None: the end) for the publish stage, waiting while one is queued;
        False when the publish stage has stopped."""
        while True:
            try:
                self._handoff.put(pending, timeout=HANDOFF_POLL_S)
                return True
            except queue.Full:
                if not all(thread.is_alive() for thread in self._threads[1:]):
                    return False

    def _finish_handed_over(self) -> None:
        """Publish stage: finish and publish every pass the network stage hands over, in order."""
        while (pending := self._handoff.get()) is not None:
            self._finish(pending)

    def _finish(self, pending: PendingPair) -> None:
        """Outputs of the pending pair's newest frame (mask memory included), published."""
        if pending.reset_memory:
            self._memory.reset()
            self._object.reset()  # a followed object cannot be carried over a pair reset
        self._memory.weight = pending.memory_weight
        self._take_object_mask(pending)
        out = self.pipeline.finish(pending.network_pass, self._object if self._object.following else self._memory)
        if self._object.following:
            self._stats.count(f"mask origin: {self._object.source}")
        self._publish_outputs(pending.frame, out)
        self._stats.record(latency_ms=(time.monotonic() - pending.received) * 1000.0, inference_ms=out.latency_ms)

    def _take_object_mask(self, pending: PendingPair) -> None:
        """Give the object memory the ~/object_mask that belongs to this pair, if one does."""
        match = self._object_masks.match(pending.frame.stamp_ns, pending.previous_stamp_ns)
        if match is None:
            return
        logger = self.node.get_logger()
        if match.kind == "stale":
            self._stats.count("object mask: dropped, its frame is gone")
            logger.warning(f"object mask stamped {match.stamp_ns} ns dropped: no frame with that stamp is "
                           f"being published (pair {pending.frame.stamp_ns} / {pending.previous_stamp_ns} ns)")
        elif match.kind == "stop":
            self._object.reset()
            self._memory.reset()  # its last mask is from before following began
            self._stats.count("object mask: stop following")
            logger.info("empty object mask: following nothing, back to the unsupervised mask")
        else:
            height, width = pending.frame.rgb.shape[:2]
            try:
                self._object.give(check_object_mask(match.mask, (width, height)), newest=match.kind == "newest")
            except InputError as exc:
                self._stats.count("object mask: bad size")
                logger.warning(f"object mask stamped {match.stamp_ns} ns ignored: {exc}")
                return
            self._stats.count("object mask: applied")
            logger.info(f"following the object of the frame stamped {match.stamp_ns} ns")

    def _publish_outputs(self, frame: PairFrame, out: PairOutputs) -> None:
        """Every output someone subscribes to (raw, compressed or both), computed once."""
        for name, encoding in OUTPUT_ENCODINGS.items():
            if not self._param(f"publish_{name}"):
                continue
            raw = self._image_pubs[name]
            compressed = self._compressed_pubs.get(name)
            raw_wanted = raw.get_subscription_count() > 0
            compressed_wanted = compressed is not None and compressed.get_subscription_count() > 0
            if not (raw_wanted or compressed_wanted):  # visualisations are computed only for a subscriber
                continue
            image = output_image(name, frame.rgb, out)
            if raw_wanted:
                raw.publish(Image(header=frame.header, **vars(encode_image(image, encoding))))
            if compressed_wanted:
                encoded = encode_compressed(image, COMPRESSED_OUTPUT_CODECS[name], self._param("output_jpeg_quality"))
                compressed.publish(CompressedImage(header=frame.header, **vars(encoded)))
        info = self._camera_info
        if info is not None and self._param("publish_camera_info") and self._info_pub.get_subscription_count() > 0:
            height, width = frame.rgb.shape[:2]
            self._info_pub.publish(scale_camera_info(info, width, height, frame.header))

    def publish_diagnostics(self) -> None:
        """One /diagnostics status named '<node>: perception', rates over the time since the last."""
        now = time.monotonic()
        counts, latency_ms, inference_ms = self._stats.snapshot()
        then, previous = self._last_status
        self._last_status = (now, counts)
        status = diagnostic_status(
            f"{self.node.get_fully_qualified_name()}: perception",
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
            worker_alive=self.alive(),
        )
        header = Header(stamp=self.node.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=[status]))
