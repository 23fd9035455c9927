"""Write the ``predict`` file set following one given object (``predict --first-mask``).

Frames run in the node's order, so the object is carried along the flow by ``ObjectMemory``: frame
i > 0 from the pair (i, i - 1), frame 0 from (0, 1) with the given mask as its mask. So, unlike
the unsupervised ``predict``, flow/S.flo and occlusion/S.png of frame i > 0 are i -> i - 1 (the
node's ``~/flow`` and ``~/occlusion``); frame 0's are 0 -> 1. summary.json says so
(``flow_direction``) and names, per frame, the rule that produced its mask (``mask_origin``:
given, carried or reidentified).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from jointperception.data.sources import source_warnings
from jointperception.errors import InputError
from jointperception.runtime.object_memory import ObjectMemory, ObjectRule, check_object_mask
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline
from jointperception.runtime.predict_files import OUTPUT_FOLDERS, write_frame, write_summary

FLOW_DIRECTION = "frame i -> i - 1 (frame 0: 0 -> 1), as the node publishes it"


def predict_object_to_folder(
    pipeline: PerceptionPipeline,
    source: Iterable[tuple[str, np.ndarray]],
    out_dir: str | Path,
    first_mask: np.ndarray,
    metadata: Mapping[str, object] | None = None,
    rule: ObjectRule = ObjectRule(),
) -> dict[str, object]:
    """Predictions for every ``(stem, frame (H, W, 3) uint8)`` of ``source`` following the object
    of first_mask (H, W) (nonzero = object) -> the summary also written to ``out_dir/summary.json``.

    Raises InputError for fewer than 2 frames, or a first mask that is empty or not the frames' size.
    """
    out_dir = Path(out_dir)
    memory = ObjectMemory(rule)
    memory.give(first_mask, newest=True)
    rows: list[dict[str, object]] = []
    frames = iter(source)
    first = next(frames, None)
    previous = first
    for stem, frame in frames:
        if not rows:
            check_object_mask(first_mask, (first[1].shape[1], first[1].shape[0]))
            for name in OUTPUT_FOLDERS:
                (out_dir / name).mkdir(parents=True, exist_ok=True)
            rows.append(_write(out_dir, first[0], pipeline.infer_pair(first[1], frame, memory), memory))
        rows.append(_write(out_dir, stem, pipeline.infer_pair(frame, previous[1], memory), memory))
        previous = (stem, frame)
    if not rows:
        raise InputError(f"need at least 2 frames, the input has {0 if first is None else 1}")
    metadata = {**(metadata or {}), "flow_direction": FLOW_DIRECTION}
    return write_summary(out_dir, pipeline, previous[1].shape, rows, metadata, source_warnings(source))


def _write(out_dir: Path, stem: str, outputs: PairOutputs, memory: ObjectMemory) -> dict[str, object]:
    write_frame(out_dir, stem, outputs, forward=True)
    return {"stem": stem, "latency_ms": outputs.latency_ms, "mask_origin": memory.source}
