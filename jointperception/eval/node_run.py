"""Score a recorded perception-node run: the input bag (frames + GT) and the bag the recorder wrote.

The recorder logs every message at its receive time, so for an output stamped like input frame t
latency = log time of the output - log time of frame t (both the recorder's clock: DDS transport
+ queueing + inference + publishing). Frame counts and drops come from the node's last
/diagnostics status; frames without an output are counted from the stamps. The node pairs a frame
with the last frame it took; GT flow / occlusion (frame t -> t-1) is scored only where frame t-1
was taken for sure: it has an output too, or it is the first frame of the bag.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from jointperception.data.bags import IMAGE_TYPE, bag_topics, read_image_topics, record_rgb, typestore
from jointperception.data.image_msg import decode_image
from jointperception.errors import DataFormatError
from jointperception.eval.replay import GroundTruthScorer, ReplayResult, ReplaySettings, output_topics
from jointperception.runtime.pipeline import PairOutputs

DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
SCORED_OUTPUTS = ("mask", "flow", "occlusion", "motion_layers")
# (stamp_ns, frame (H, W, 3) uint8, the node's outputs of that frame)
SampleCallback = Callable[[int, np.ndarray, PairOutputs], None]


def read_log_times(bag: Path, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    """topic -> {header stamp ns: log (receive) time ns} of the Image topics of a recorded bag."""
    topics = list(topics)
    times: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for topic, log_time, record in read_image_topics(bag, topics):
        times[topic][record.stamp_ns] = log_time
    return times


def node_statuses(bag: Path, name_prefix: str, topic: str = "/diagnostics") -> list[tuple[int, dict[str, str]]]:
    """(log time ns, key -> value) of every DiagnosticStatus named ``name_prefix``... in the bag."""
    info = bag_topics(bag).get(topic)
    if info is None:
        return []
    if info.msgtype != DIAGNOSTICS_TYPE:
        raise DataFormatError(f"{bag}: {topic} holds {info.msgtype}, not {DIAGNOSTICS_TYPE}")
    statuses = []
    with Reader(bag) as reader:  # bag_topics opened it already: an error here is not the user's
        connections = [c for c in reader.connections if c.topic == topic]
        for _connection, log_time, raw in reader.messages(connections=connections):
            for status in typestore().deserialize_cdr(raw, DIAGNOSTICS_TYPE).status:
                if status.name.startswith(name_prefix):
                    statuses.append((log_time, {kv.key: kv.value for kv in status.values}))
    return statuses


def _outputs(images: dict[str, np.ndarray]) -> PairOutputs:
    """Recorded output images of one frame -> PairOutputs (mask probability = mask / 255)."""
    mask_probability = images["mask"].astype(np.float32) / 255.0  # the branch probabilities are not published
    return PairOutputs(mask=images["mask"] > 0, mask_probability=mask_probability,
                       segmentation_probability=mask_probability, moving_probability=mask_probability,
                       residual_probability=mask_probability,
                       flow=images["flow"], occlusion=images["occlusion"] > 0, layers=images["motion_layers"],
                       latency_ms=float("nan"))


def score_node_run(in_bag: Path, recorded_bag: Path, settings: ReplaySettings,
                   on_sample: SampleCallback | None = None) -> ReplayResult:
    """Counts, per-frame latency and GT scores of a node run; ``on_sample`` gets ``settings.samples`` frames.

    Raises DataFormatError for an unreadable bag or when the recorded bag lacks a needed topic.
    """
    names = output_topics(settings.output_prefix)
    log_times = read_log_times(recorded_bag, [settings.topic, names["mask"]])
    received_input, received_mask = log_times[settings.topic], log_times[names["mask"]]
    recorded: dict[int, dict[str, np.ndarray]] = {}
    for topic, _log, record in read_image_topics(recorded_bag, [names[n] for n in SCORED_OUTPUTS]):
        recorded.setdefault(record.stamp_ns, {})[topic.rsplit("/", 1)[1]] = decode_image(*record[2:])
    in_topics = bag_topics(in_bag)
    gt_kinds = {topic: kind for kind, topic in settings.gt_topics
                if topic in in_topics and in_topics[topic].msgtype == IMAGE_TYPE}
    frames: dict[int, np.ndarray] = {}
    truth: dict[int, dict[str, np.ndarray]] = {}
    for topic, _log, record in read_image_topics(in_bag, [settings.topic, *gt_kinds]):
        if topic == settings.topic:
            frames[record.stamp_ns] = record_rgb(record)
        else:
            truth.setdefault(record.stamp_ns, {})[gt_kinds[topic]] = decode_image(*record[2:])

    stamps = list(frames)  # bag order
    complete = [s for s in stamps if recorded.get(s, {}).keys() >= set(SCORED_OUTPUTS)]
    scorer = GroundTruthScorer(frozenset(gt_kinds.values()))
    rows: list[dict[str, float]] = []
    chosen = {complete[int(i)] for i in np.linspace(0, len(complete) - 1, settings.samples).round()} \
        if complete and settings.samples > 0 else set()
    for index, stamp in enumerate(stamps):
        if stamp not in complete:
            continue
        previous_taken = index == 1 or (index > 1 and stamps[index - 1] in recorded)
        for kind, array in truth.get(stamp, {}).items():
            if kind == "mask" or previous_taken:  # flow / occlusion GT pair t with t-1
                scorer.add_truth(kind, stamp, array)
        outputs = _outputs(recorded[stamp])
        scorer.add_outputs(stamp, outputs)
        if stamp in received_input and stamp in received_mask:
            rows.append({"stamp_ns": stamp, "latency_ms": (received_mask[stamp] - received_input[stamp]) / 1e6})
        if on_sample is not None and stamp in chosen:
            on_sample(stamp, frames[stamp], outputs)
    gt = scorer.finish()
    for row in rows:
        row.update(scorer.rows.get(int(row["stamp_ns"]), {}))
    statuses = node_statuses(recorded_bag, settings.output_prefix)
    status = statuses[-1][1] if statuses else {}
    counts = {
        "frames in bag": len(stamps),
        "received (node)": int(status.get("frames received", 0)),
        "processed (node)": int(status.get("frames processed", 0)),
        "dropped (node)": int(status.get("dropped frames", 0)),
        "bad (node)": int(status.get("bad frames", 0)),
        "processed": len(complete),  # frames with every scored output recorded
        "no output (first frame excluded)": sum(1 for s in stamps[1:] if s not in recorded),
    }
    span_ns = (max(received_mask.values()) - min(received_input.values())) if received_mask and received_input else 0
    recorded_outputs = {topic: info.count for topic, info in bag_topics(recorded_bag).items() if topic in names.values()}
    return ReplayResult(counts, rows, span_ns / 1e9, gt, recorded_outputs)
