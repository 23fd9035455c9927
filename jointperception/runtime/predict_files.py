"""Run a pipeline over a frame source and write the ``predict`` file set (README, predict; docs/design.md, contracts).

For frame i with stem S: flow/S.flo (i -> i+1), mask/S.png, occlusion/S.png (i w.r.t. i+1),
layers/S.png, plus summary.json. The last frame has no successor: its mask and layers come from
the pair (last, previous), and it gets no flow or occlusion file. Memory is constant: the two
newest frames are kept, plus the one being read.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sized
from pathlib import Path

import numpy as np

from jointperception.data.formats import write_flo, write_label_image, write_mask
from jointperception.data.sources import source_warnings
from jointperception.errors import InputError
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline

OUTPUT_FOLDERS = ("flow", "mask", "occlusion", "layers")


def write_frame(out_dir: Path, stem: str, outputs: PairOutputs, forward: bool) -> None:
    write_mask(out_dir / "mask" / f"{stem}.png", outputs.mask)
    write_label_image(out_dir / "layers" / f"{stem}.png", outputs.layers)
    if forward:
        write_flo(out_dir / "flow" / f"{stem}.flo", outputs.flow)
        write_mask(out_dir / "occlusion" / f"{stem}.png", outputs.occlusion)


def latency_stats(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
    }


def predict_to_folder(
    pipeline: PerceptionPipeline,
    source: Iterable[tuple[str, np.ndarray]],
    out_dir: str | Path,
    metadata: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Write predictions for every ``(stem, frame (H, W, 3) uint8)`` of ``source`` under ``out_dir``.

    Returns the summary also written to ``out_dir/summary.json``; ``metadata`` (e.g. the input
    path, the fine-tuning record of ``--first-mask``) is copied into it first. Raises InputError for fewer than 2 frames.
    """
    if isinstance(source, Sized) and len(source) < 2:
        raise InputError(f"need at least 2 frames, the input has {len(source)}")
    out_dir = Path(out_dir)
    previous: tuple[str, np.ndarray] | None = None  # newest (stem, frame)
    before_previous: np.ndarray | None = None  # the frame before it, for the reversed last pair
    timings: list[tuple[str, float]] = []  # (stem, latency ms) per frame
    for stem, frame in source:
        if previous is not None:
            if not timings:
                for name in OUTPUT_FOLDERS:
                    (out_dir / name).mkdir(parents=True, exist_ok=True)
            outputs = pipeline.infer_pair(previous[1], frame)
            write_frame(out_dir, previous[0], outputs, forward=True)
            timings.append((previous[0], outputs.latency_ms))
        before_previous = previous[1] if previous is not None else None
        previous = (stem, frame)
    if previous is None or before_previous is None:
        raise InputError(f"need at least 2 frames, the input has {0 if previous is None else 1}")
    # the last frame has no successor: its mask comes from the reversed pair (last, previous)
    last_stem, last_frame = previous
    outputs = pipeline.infer_pair(last_frame, before_previous)
    write_frame(out_dir, last_stem, outputs, forward=False)
    timings.append((last_stem, outputs.latency_ms))

    frames = [{"stem": stem, "latency_ms": ms} for stem, ms in timings]
    return write_summary(out_dir, pipeline, last_frame.shape, frames, metadata, source_warnings(source))


def write_summary(out_dir: Path, pipeline: PerceptionPipeline, frame_shape: tuple[int, ...],
                  frames: list[dict[str, object]], metadata: Mapping[str, object] | None,
                  warnings: list[str]) -> dict[str, object]:
    """summary.json of a run: ``metadata``, then the pipeline, the input size (frame_shape (H, W, 3)),
    latency statistics, ``warnings`` (a video or bag shorter than it declares: ``source_warnings``)
    and ``frames`` (per frame: stem, latency_ms and what the run adds)."""
    height, width = frame_shape[:2]
    summary: dict[str, object] = dict(metadata or {})
    summary.update(
        model=str(pipeline.model_path) if pipeline.model_path is not None else None,
        backend=pipeline.backend.name,
        device=pipeline.backend.device,
        network_size={"width": pipeline.network_size[0], "height": pipeline.network_size[1]},
        flip_average=pipeline.flip_average,
        mask_source=pipeline.mask_source,
        input_resolution={"width": width, "height": height},
        frame_count=len(frames),
        latency_ms=latency_stats([row["latency_ms"] for row in frames]),
        warnings=warnings,
        frames=frames,
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
