"""One ``replay`` run: build the pipeline, replay a bag into an output bag, write metrics.json,
the report and its sample strips. ``jointperception replay`` runs it once; ``replay-fleet`` runs
it once per bag, on Ray workers, so each bag's outputs are those of ``replay`` on that bag."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jointperception.data.formats import read_mask
from jointperception.eval.replay import ReplayResult, ReplaySettings, replay_bag
from jointperception.eval.report import replay_metrics, write_metrics, write_report, write_sample_strip
from jointperception.outputs import check_replaceable, staged_folder
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline


@dataclass(frozen=True)
class ReplayJob:
    """The pipeline options and replay settings of ``replay`` (its command-line options)."""

    model: Path | None = None  # model file; None = the bundled model
    backend: str = "torch"
    device: str = "cpu"
    network_size: tuple[int, int] = (320, 240)  # (W, H)
    mask_source: str = "fused"
    mask_threshold: float = 0.5
    occlusion_threshold: float = 0.5
    prealign: bool = True
    refine: bool = True
    refined_layers: bool = True
    settings: ReplaySettings = field(default_factory=ReplaySettings)
    first_mask: Path | None = None  # mask of the topic's first frame: follow that object (docs/first_mask.md)

    def pipeline(self) -> PerceptionPipeline:
        pipeline = PerceptionPipeline.from_model_file(self.model, self.backend, self.device, self.network_size)
        pipeline.mask_source = self.mask_source
        pipeline.mask_threshold = self.mask_threshold
        pipeline.occlusion_threshold = self.occlusion_threshold
        pipeline.prealign, pipeline.refine, pipeline.refined_layers = self.prealign, self.refine, self.refined_layers
        return pipeline


@dataclass(frozen=True)
class ReplayRun:
    result: ReplayResult
    metrics: dict[str, object]  # the content of metrics.json
    metrics_path: Path
    report_path: Path


def replay_to_folder(job: ReplayJob, in_bag: Path, out_bag: Path, report_dir: Path) -> ReplayRun:
    """Replay ``in_bag`` into ``out_bag`` (mcap, written whole or not at all: ``outputs.staged_folder``),
    then write report_dir/metrics.json, report_dir/report.html and its files. Raises as ``replay_bag`` and ``PerceptionPipeline.from_model_file``."""
    check_replaceable(out_bag, "replay")  # before the model loads
    pipeline = job.pipeline()
    samples: list[Path] = []

    def save_sample(stamp_ns: int, rgb: np.ndarray, out: PairOutputs) -> None:
        samples.append(write_sample_strip(report_dir, stamp_ns, rgb, out))

    first_mask = read_mask(job.first_mask) if job.first_mask is not None else None
    with staged_folder(out_bag, "replay") as staging:
        result = replay_bag(pipeline, in_bag, staging, job.settings, on_sample=save_sample, first_mask=first_mask)
    facts = {
        "input_bag": str(in_bag), "topic": job.settings.topic, "output_bag": str(out_bag),
        "model": str(pipeline.model_path), "backend": pipeline.backend.name, "device": pipeline.backend.device,
        "network_size": "x".join(map(str, pipeline.network_size)), "mask_source": job.mask_source,
        "mask_threshold": job.mask_threshold, "occlusion_threshold": job.occlusion_threshold,
        "mask_memory": job.settings.mask_memory, "prealign": job.prealign, "refine_flow": job.refine,
        "refined_layers": job.refined_layers, "reset_gap_s": job.settings.reset_gap_s,
        "first_mask": None if job.first_mask is None else str(job.first_mask),
    }
    metrics = replay_metrics(result, facts)
    metrics_path = write_metrics(report_dir / "metrics.json", metrics)
    report_path = write_report(report_dir, metrics, samples)
    return ReplayRun(result, metrics, metrics_path, report_path)
