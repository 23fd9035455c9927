"""Replay a camera topic (Image or CompressedImage) of a rosbag2 bag through the node's pipeline,
offline, frame by frame.

Every frame is converted like the node does, paired with the previous kept frame under the
node's pair-reset rule, and ``infer_pair(newest, previous, memory)`` gives the outputs of the
newest frame, its mask carried along the flow by the node's mask memory (reset with the pair), or
with a first mask the given object followed (``runtime.object_memory``).
Unlike the live node nothing is dropped: every decodable frame is processed. The output bag (mcap)
holds the input topic plus ``<prefix>/<name>`` for each output, stamped and logged like the input
frame. GT topics, when present, are matched to the outputs by stamp and scored.
"""
from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jointperception.data.bags import (
    IMAGE_TYPE,
    BagImageWriter,
    read_image_topics,
    record_encoding,
    record_rgb,
    require_image_topics,
    stop_at_shortfall,
)
from jointperception.data.image_msg import ImageConversionError, decode_image
from jointperception.errors import DataFormatError, InputError
from jointperception.eval.metrics import (
    aggregate_flow_errors,
    flow_errors,
    jaccard,
    sequence_j_statistics,
)
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, MaskMemory
from jointperception.runtime.object_memory import ObjectMemory, check_object_mask
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline
from jointperception.runtime.stream import (
    OUTPUT_ENCODINGS,
    PairFrame,
    output_image,
    pair_reset_reason,
)

PENDING_LIMIT = 64  # unmatched outputs / GT kept for stamp matching; the oldest go first
# (stamp_ns, newest frame (H, W, 3) uint8, its outputs): called for the sample frames
SampleCallback = Callable[[int, np.ndarray, PairOutputs], None]


@dataclass(frozen=True)
class ReplaySettings:
    topic: str = "/camera/image_raw"  # input sensor_msgs/Image topic
    output_prefix: str = "/jointperception_node"  # outputs go to <prefix>/mask, ... (the node's ~/)
    reset_gap_s: float = 1.0  # the node's reset_gap_s: forget the previous frame after this gap; 0 = never
    mask_memory: float = DEFAULT_MEMORY_WEIGHT  # the node's mask_memory (runtime.mask_memory); 0 = none
    # GT topics (stamped like the frame): mask mono8 255 = moving; flow 32FC2 newest -> previous
    # frame (as ~/flow); occlusion mono8 255 = pixel of the newest frame not visible in the previous
    gt_topics: tuple[tuple[str, str], ...] = (("mask", "/gt/mask"), ("flow", "/gt/flow"),
                                              ("occlusion", "/gt/occlusion"))
    samples: int = 4  # frames handed to the sample callback, spread over the bag


@dataclass(frozen=True)
class ReplayResult:
    counts: dict[str, int]  # received, processed, "bad: <cause>", "pair resets: <reason>"
    frames: list[dict[str, float | str]]  # per processed frame: stamp_ns, latency_ms, GT scores, mask_origin if any
    wall_s: float  # whole replay, reading and writing included
    gt: dict[str, dict[str, float]]  # "mask" / "flow" / "occlusion" summaries; empty without GT
    output_counts: dict[str, int]  # topic -> messages written
    warnings: list[str] = field(default_factory=list)  # the input bag held fewer messages than it lists


class GroundTruthScorer:
    """Scores outputs against GT images of the same stamp: mask J, flow EPE / Fl (noc / occ
    split when occlusion GT is there), occlusion J. A stamp is scored once all GT kinds arrived,
    or with the kinds it has when it leaves the pending window or at ``finish``."""

    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self._truth: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._outputs: OrderedDict[int, PairOutputs] = OrderedDict()
        self.rows: dict[int, dict[str, float]] = {}  # stamp -> j, epe_all, fl_all, occlusion_j
        self._flow: list[dict[str, float]] = []

    def add_truth(self, kind: str, stamp_ns: int, array: np.ndarray) -> None:
        self._truth.setdefault(stamp_ns, {})[kind] = array
        self._settle(stamp_ns)

    def add_outputs(self, stamp_ns: int, outputs: PairOutputs) -> None:
        if self.kinds:
            self._outputs[stamp_ns] = outputs
            self._settle(stamp_ns)

    def _settle(self, stamp_ns: int) -> None:
        if stamp_ns in self._outputs and self._truth.get(stamp_ns, {}).keys() == self.kinds:
            self._score(stamp_ns)
        while len(self._outputs) > PENDING_LIMIT:
            self._score(next(iter(self._outputs)))
        while len(self._truth) > PENDING_LIMIT:
            self._truth.popitem(last=False)  # GT of a frame that gave no output (first, bad, reset)

    def _score(self, stamp_ns: int) -> None:
        out, truth = self._outputs.pop(stamp_ns), self._truth.pop(stamp_ns, {})
        row: dict[str, float] = {}
        occlusion = truth["occlusion"] != 0 if "occlusion" in truth else None
        if "mask" in truth:
            row["j"] = jaccard(out.mask, truth["mask"] != 0)
        if occlusion is not None:
            row["occlusion_j"] = jaccard(out.occlusion, occlusion)
        if "flow" in truth:
            errors = flow_errors(out.flow, truth["flow"], occlusion=occlusion)
            self._flow.append(errors)
            row.update(epe_all=errors["epe_all"], fl_all=errors["fl_all"])
        if row:
            self.rows[stamp_ns] = row

    def finish(self) -> dict[str, dict[str, float]]:
        """Score what is pending; summaries per GT kind scored at least once."""
        while self._outputs:
            self._score(next(iter(self._outputs)))
        summary: dict[str, dict[str, float]] = {}
        for kind, key in (("mask", "j"), ("occlusion", "occlusion_j")):
            values = [row[key] for row in self.rows.values() if key in row]
            if values:
                stats = sequence_j_statistics(values)
                summary[kind] = {**stats, "frames": float(len(values))}
        if self._flow:
            summary["flow"] = aggregate_flow_errors(self._flow)
        return summary


def output_topics(prefix: str) -> dict[str, str]:
    """Output name -> topic under ``prefix`` (absolute, no trailing slash)."""
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise InputError(f"output prefix must start with '/' and not end with one, got {prefix!r}")
    return {name: f"{prefix}/{name}" for name in OUTPUT_ENCODINGS}


def replay_bag(pipeline: PerceptionPipeline, in_bag: str | Path, out_bag: str | Path,
               settings: ReplaySettings, on_sample: SampleCallback | None = None,
               first_mask: np.ndarray | None = None) -> ReplayResult:
    """Run ``pipeline`` over ``settings.topic`` of ``in_bag`` and write ``out_bag`` (mcap).

    ``first_mask`` (H, W), nonzero = object, of the topic's first frame: follow that object
    (``runtime.object_memory``; each frame row names its ``mask_origin``) until a pair reset, then
    go on unsupervised. Raises DataFormatError for an unreadable bag, a missing topic or a bad GT
    image; InputError when ``out_bag`` exists, the topic holds fewer than 2 messages, or the first
    mask is empty or not the first frame's size.
    """
    topics = require_image_topics(in_bag, [settings.topic])
    if topics[settings.topic].count < 2:
        raise InputError(f"{in_bag}: topic {settings.topic} holds {topics[settings.topic].count} messages, need 2+")
    memory: MaskMemory | ObjectMemory = MaskMemory(settings.mask_memory)
    if first_mask is not None:
        memory = ObjectMemory()
        memory.give(first_mask, newest=False)  # carried into the first pair (second frame, first frame)
        check_object_mask(first_mask, _first_frame_size(in_bag, settings.topic))
    outputs = output_topics(settings.output_prefix)
    gt_kinds = {topic: kind for kind, topic in settings.gt_topics
                if topic != settings.topic and topic in topics and topics[topic].msgtype == IMAGE_TYPE}
    count = topics[settings.topic].count
    samples = {int(i) for i in np.linspace(1, count - 1, settings.samples).round()} if settings.samples > 0 else set()
    scorer = GroundTruthScorer(frozenset(gt_kinds.values()))
    counts: Counter[str] = Counter()
    frames: list[dict[str, float | str]] = []
    previous: PairFrame | None = None
    start = time.perf_counter()
    with BagImageWriter(out_bag, storage="mcap") as writer:
        warnings: list[str] = []
        for topic, log_time, record in stop_at_shortfall(read_image_topics(in_bag, [settings.topic, *gt_kinds]),
                                                         warnings):
            if topic in gt_kinds:
                try:
                    scorer.add_truth(gt_kinds[topic], record.stamp_ns, decode_image(*record[2:]))
                except ImageConversionError as exc:
                    raise DataFormatError(f"{in_bag}: GT topic {topic} at stamp {record.stamp_ns}: {exc}") from exc
                continue
            index = counts["received"]
            counts["received"] += 1
            writer.write_fields(topic, record.stamp_ns, record, record.frame_id, log_time)
            try:
                rgb = record_rgb(record)
            except ImageConversionError as exc:
                counts[f"bad: {exc.cause}"] += 1
                continue
            frame = PairFrame(record.frame_id, record_encoding(record), rgb, record.stamp_ns)
            reason = pair_reset_reason(previous, frame, settings.reset_gap_s)
            if reason is not None:
                counts[f"pair resets: {reason}"] += 1
                memory = MaskMemory(settings.mask_memory)  # a followed object cannot be carried over a reset
            first = previous if reason is None else None
            previous = frame
            if first is None:
                continue
            out = pipeline.infer_pair(frame.rgb, first.rgb, memory)  # outputs of the newest frame
            counts["processed"] += 1
            for name, out_topic in outputs.items():
                image = output_image(name, frame.rgb, out)
                writer.write(out_topic, frame.stamp_ns, image, OUTPUT_ENCODINGS[name], record.frame_id, log_time)
            frames.append({"stamp_ns": frame.stamp_ns, "latency_ms": out.latency_ms,
                           **({"mask_origin": memory.source} if isinstance(memory, ObjectMemory) else {})})
            scorer.add_outputs(frame.stamp_ns, out)
            if on_sample is not None and index in samples:
                on_sample(frame.stamp_ns, frame.rgb, out)
        output_counts = dict(writer.counts)
    gt = scorer.finish()
    for row in frames:
        row.update(scorer.rows.get(int(row["stamp_ns"]), {}))
    return ReplayResult(dict(counts), frames, time.perf_counter() - start, gt, output_counts, warnings)


def _first_frame_size(in_bag: str | Path, topic: str) -> tuple[int, int]:
    """(W, H) of the first frame of ``topic``; DataFormatError when it does not decode."""
    _topic, _log_time, record = next(iter(read_image_topics(in_bag, [topic])))
    try:
        rgb = record_rgb(record)
    except ImageConversionError as exc:
        raise DataFormatError(f"{in_bag}: the first frame of {topic} does not decode, so the first mask cannot be "
                              f"checked: {exc}") from exc
    return rgb.shape[1], rgb.shape[0]
