"""The replay report: ``metrics.json`` and a self-contained folder with ``report.html``, a
per-frame latency plot (PNG, matplotlib Agg) and sample strips (frame | mask | flow | layers)."""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jointperception.data.formats import write_image
from jointperception.eval.replay import ReplayResult
from jointperception.outputs import write_text_atomic
from jointperception.runtime.pipeline import PairOutputs
from jointperception.viz import make_strip

FILES_DIR = "report_files"  # beside report.html: plots and samples


def _finite_or_none(value: object) -> object:
    """JSON has no NaN: NaN / inf -> null, recursively through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def latency_stats(latency_ms: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, max of per-frame latencies (ms); NaN for none."""
    values = np.asarray(latency_ms, dtype=np.float64)
    if values.size == 0:
        return dict.fromkeys(("mean", "p50", "p90", "p99", "max"), math.nan)
    return {"mean": float(values.mean()), **{f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)},
            "max": float(values.max())}


def replay_metrics(result: ReplayResult, facts: Mapping[str, object]) -> dict[str, object]:
    """The metrics.json content: ``facts`` (bags, model, backend, ...), frame counts, latency,
    throughput, GT scores (``gt`` is {} when the bag has no GT topic) and ``warnings`` (the input
    bag held fewer messages than its metadata lists)."""
    latencies = [row["latency_ms"] for row in result.frames]
    return {
        **facts,
        "frames": result.counts,
        "latency_ms": latency_stats(latencies),
        "throughput_fps": result.counts.get("processed", 0) / result.wall_s if result.wall_s > 0 else math.nan,
        "wall_s": result.wall_s,
        "gt": result.gt,
        "output_topics": result.output_counts,
        "warnings": result.warnings,
        "per_frame": result.frames,
    }


def write_sample_strip(report_dir: Path, stamp_ns: int, rgb: np.ndarray, outputs: PairOutputs) -> Path:
    """report_dir/report_files/sample_<stamp>.png: frame | mask | flow | layers of frame ``rgb`` (H, W, 3)."""
    path = report_dir / FILES_DIR / f"sample_{stamp_ns}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, make_strip(rgb, outputs.mask, outputs.flow, outputs.layers))
    return path


def write_metrics(path: Path, metrics: Mapping[str, object]) -> Path:
    return write_text_atomic(path, json.dumps(_finite_or_none(metrics), indent=2, allow_nan=False) + "\n")


def write_plots(folder: Path, frames: Sequence[Mapping[str, float]]) -> list[Path]:
    """latency.png (ms per processed frame) and, with GT scores, quality.png (J and EPE)."""
    # matplotlib (the "plots" extra) loads in ~0.4 s: only when plotting, not with every CLI call
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    index = np.arange(len(frames))
    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.add_subplot()
    axes.plot(index, [row["latency_ms"] for row in frames], marker=".", linewidth=1)
    axes.set(xlabel="processed frame", ylabel="latency (ms)", title="latency per frame")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(folder / "latency.png"))
    paths = [folder / "latency.png"]
    series = [(key, label) for key, label in (("j", "mask J"), ("occlusion_j", "occlusion J"), ("epe_all", "EPE (px)"))
              if any(key in row for row in frames)]
    if series:
        figure = Figure(figsize=(8, 2.2 * len(series)), dpi=100)
        for position, (key, label) in enumerate(series, start=1):
            axes = figure.add_subplot(len(series), 1, position)
            axes.plot(index, [row.get(key, math.nan) for row in frames], marker=".", linewidth=1)
            axes.set(ylabel=label)
            axes.grid(alpha=0.3)
        axes.set(xlabel="processed frame")
        figure.tight_layout()
        FigureCanvasAgg(figure).print_png(str(folder / "quality.png"))
        paths.append(folder / "quality.png")
    return paths


def _table(rows: Mapping[str, object]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))

    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{cell(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def write_report(report_dir: Path, metrics: Mapping[str, object], samples: Sequence[Path]) -> Path:
    """report_dir/report.html over ``metrics`` (``replay_metrics``), plots written to
    report_dir/report_files/, and ``samples`` (PNG paths under report_dir)."""
    plots = write_plots(report_dir / FILES_DIR, metrics["per_frame"])
    facts = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list))}
    sections = [
        "<h2>Run</h2>", _table(facts),
        "<h2>Frames</h2>", _table(metrics["frames"]),
        f"<h2>Latency (ms, {html.escape(str(metrics.get('latency', 'infer_pair')))})</h2>", _table(metrics["latency_ms"]),
        "<h2>Against ground truth</h2>",
    ]
    gt = metrics["gt"]
    sections += [f"<h3>{html.escape(kind)}</h3>{_table(values)}" for kind, values in gt.items()] or [
        "<p>No GT topic in the bag (looked for mask, flow and occlusion GT topics).</p>"]
    sections.append("<h2>Plots</h2>")
    sections += [f'<img src="{path.relative_to(report_dir).as_posix()}" alt="{path.stem}">' for path in plots]
    sections.append("<h2>Samples: frame | mask | flow | layers</h2>")
    sections += [f'<figure><img src="{path.relative_to(report_dir).as_posix()}" alt="{path.stem}">'
                 f"<figcaption>{html.escape(path.stem)}</figcaption></figure>" for path in samples]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}" \
            "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}"
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>jointperception replay</title>"
            f"<style>{style}</style></head><body><h1>jointperception replay</h1>{''.join(sections)}</body></html>\n")
    return write_text_atomic(report_dir / "report.html", page)
