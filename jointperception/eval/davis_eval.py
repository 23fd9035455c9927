"""Unsupervised video object segmentation on DAVIS-style sequences: ours vs the classical reference.

For frame i the network sees the pair (i, i+1) (the last frame: (last, last-1)) and its mask of
frame i is scored against the annotation; the streaming result runs the sequence as the node would
(pair (i, i-1), mask memory along the flow). Every annotated frame is scored (unsupervised protocol:
no first-frame mask is given). The classical reference is DIS-medium flow at full resolution ->
dominant affine motion -> Otsu on the residual -> largest component.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from jointperception.classical.opencv_flow import classical_reference
from jointperception.data.real import davis_sequences, load_davis_sequence
from jointperception.eval.metrics import (
    boundary_f_measure,
    jaccard,
    summarize_sequences,
)
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, MaskMemory
from jointperception.runtime.motion_layers import MASK_SOURCES, source_masks
from jointperception.runtime.pipeline import PerceptionPipeline

# (first, second) uint8 -> (H, W) bool, or {result name: (H, W) bool} for several masks of one run
MaskPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray | dict[str, np.ndarray]]
# (every frame of a sequence, the indices to score, ascending) -> one MaskPredictor-style result per scored index
SequencePredictor = Callable[[list[np.ndarray], list[int]], Iterator[np.ndarray | dict[str, np.ndarray]]]


def pair_indices(num_frames: int) -> list[tuple[int, int]]:
    """(frame, partner) per frame: the next frame, or the previous one for the last frame."""
    return [(i, i + 1 if i + 1 < num_frames else i - 1) for i in range(num_frames)]


def per_pair(predict: MaskPredictor) -> SequencePredictor:
    """Frame i scored from the pair (i, i + 1) (``pair_indices``), each pair on its own."""
    def run(frames: list[np.ndarray], scored: list[int]) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        pairs = pair_indices(len(frames))
        for i in scored:
            yield predict(frames[i], frames[pairs[i][1]])
    return run


def streaming(pipeline: PerceptionPipeline, memory_weight: float) -> SequencePredictor:
    """The node's order: frame i > 0 from the pair (i, i - 1), frame 0 from (0, 1), every frame run
    (scored or not) with one ``MaskMemory`` per sequence -> the published mask."""
    def run(frames: list[np.ndarray], scored: list[int]) -> Iterator[np.ndarray]:
        memory = MaskMemory(memory_weight)
        wanted = set(scored)
        for i in range(len(frames)):
            out = pipeline.infer_pair(frames[i], frames[i - 1 if i > 0 else 1], memory)
            if i in wanted:
                yield out.mask
    return run


def score_sequences(
    root: Path, predictors: dict[str, SequencePredictor], sequences: list[str] | None = None, frame_step: int = 1
) -> dict[str, dict]:
    """Run every predictor over the sequences -> {name: {summary..., per_sequence, ms_per_frame}};
    a predictor yielding dicts adds one result per key, each timed with the predictor's run.

    frame_step > 1 scores every k-th frame only (faster, noisier); pairs still use adjacent frames,
    and ms_per_frame counts the frames a predictor ran but did not score.
    """
    names = sequences or davis_sequences(root)
    j_values: dict[str, dict[str, list[float]]] = {}
    f_values: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    frames_scored = 0
    for sequence in names:
        frames, masks = load_davis_sequence(root, sequence)
        scored = list(range(len(frames)))[::frame_step]
        for name, predict in predictors.items():
            start = time.perf_counter()
            for i, predicted in zip(scored, predict(frames, scored), strict=True):
                elapsed = time.perf_counter() - start
                for result, mask in (predicted.items() if isinstance(predicted, dict) else [(name, predicted)]):
                    seconds[result] = seconds.get(result, 0.0) + elapsed
                    j_values.setdefault(result, {}).setdefault(sequence, []).append(jaccard(mask, masks[i]))
                    f_values.setdefault(result, {}).setdefault(sequence, []).append(boundary_f_measure(mask, masks[i]))
                start = time.perf_counter()
        frames_scored += len(scored)
    results = {}
    for name in j_values:
        summary = summarize_sequences(j_values[name], "j") | summarize_sequences(f_values[name], "f")
        summary["per_sequence_j"] = {s: float(np.mean(v)) for s, v in j_values[name].items()}
        summary["ms_per_frame"] = 1000.0 * seconds[name] / max(frames_scored, 1)
        summary["frames"] = frames_scored
        results[name] = summary
    return results


def evaluate_davis(
    pipeline: PerceptionPipeline, root: Path, frame_step: int = 1, with_reference: bool = True,
    memory_weight: float = DEFAULT_MEMORY_WEIGHT,
) -> dict[str, dict]:
    """Our mask from each source (ours_fused, ours_segmentation, ours_motion, ours_residual: one
    inference per frame from the pair (i, i + 1), each timed with it); ours_fused_stream: the
    pipeline's mask as the node publishes it (``streaming`` with ``memory_weight``); optionally
    the classical DIS-medium reference."""
    def ours(first: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
        masks = source_masks(pipeline.infer_pair(first, second), pipeline.mask_threshold)
        return {f"ours_{source}": masks[source] for source in MASK_SOURCES}

    predictors: dict[str, SequencePredictor] = {
        "ours": per_pair(ours), f"ours_{pipeline.mask_source}_stream": streaming(pipeline, memory_weight)}
    if with_reference:
        predictors["classical_dis_medium"] = per_pair(lambda a, b: classical_reference(a, b, preset="medium")[0])
    return score_sequences(root, predictors, frame_step=frame_step)
