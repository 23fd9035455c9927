"""Bench outputs: bench.json, bench.md (latency table + accuracy) and bench.png (EPE and J
against latency, one point per method at one resolution)."""
from __future__ import annotations

import math
from pathlib import Path

from jointperception.eval.report import write_metrics
from jointperception.outputs import write_text_atomic

OUTPUT_NAMES = ("bench.json", "bench.md", "bench.png")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_markdown(results: dict) -> str:
    """Latency rows (skipped variants with their reason), then accuracy on the validation split."""
    settings = results["settings"]
    lines = [
        f"Machine: {results['machine']}. {settings['threads']} threads, {settings['warmup']} warm-up + "
        f"{settings['runs']} timed runs per row, round-robin; latency of the whole pipeline (pre + backend + post). "
        f"Idle threads {'spin' if settings['spin'] else 'sleep'} (OMP_WAIT_POLICY {settings['omp_wait_policy']}).",
        "",
        "| method | device | precision | resolution | p50 ms | p90 ms | p99 ms | frames/s | CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    skipped: dict[tuple[str, str], list[str]] = {}  # (method, reason) -> resolutions
    for row in results["latency"]:
        resolution = "x".join(str(v) for v in row["resolution"])
        if row["status"] != "ok":
            skipped.setdefault((row["method"], row["reason"]), []).append(resolution)
            continue
        lines.append(f"| {row['method']} | {row['device']} | {row['precision']} | {resolution} | {_fmt(row['p50_ms'])} | "
                     f"{_fmt(row['p90_ms'])} | {_fmt(row['p99_ms'])} | {_fmt(row['fps'])} | {_fmt(row['cpu_ms_per_frame'])} |")
    lines += _speedups(results["latency"])
    if skipped:
        lines += ["", "Skipped (not available here):"]
        lines += [f"- {method} ({', '.join(sizes)}): {reason}" for (method, reason), sizes in skipped.items()]
    validation = results["validation"]
    lines += ["", f"Accuracy on {validation['pairs']} synthetic validation pairs "
              f"({validation['size'][0]}x{validation['size'][1]}, seed {validation['seed']}):", "",
              "| method | EPE all px | EPE noc px | mask J |", "|---|---|---|---|"]
    for name, scores in results["accuracy"].items():
        lines.append(f"| {name} | {_fmt(scores['epe_all'], 3)} | {_fmt(scores['epe_noc'], 3)} | {_fmt(scores['j_mean'], 3)} |")
    return "\n".join(lines) + "\n"


def _speedups(rows: list[dict]) -> list[str]:
    """One line per resolution: p50 of torch eager over p50 of each other backend variant of ours."""
    lines = []
    for resolution in dict.fromkeys(tuple(row["resolution"]) for row in rows):
        here = {row["method"]: row for row in rows if tuple(row["resolution"]) == resolution and row["status"] == "ok"}
        if "torch" not in here:
            continue
        ratios = [f"{name} {here['torch']['p50_ms'] / row['p50_ms']:.2f}x" for name, row in here.items()
                  if row["kind"] == "ours" and name != "torch"]
        if ratios:
            lines.append(f"- {resolution[0]}x{resolution[1]}: p50 speed-up over torch eager: {', '.join(ratios)}")
    return ["", *lines] if lines else []


def plot_accuracy_latency(results: dict, resolution: list[int], path: Path) -> None:
    """Two panels, EPE and J against p50 latency at ``resolution`` (W, H), one labelled point per method."""
    latency = {row["method"]: row for row in results["latency"]
               if row["status"] == "ok" and row["resolution"] == list(resolution)}
    # matplotlib loads in ~0.4 s: only when plotting; the Agg canvas draws to files, never a display
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, metric, label in ((axes[0], "epe_all", "flow EPE (px, lower is better)"),
                                (axes[1], "j_mean", "mask J (higher is better)")):
        for name, scores in results["accuracy"].items():
            if name not in latency:
                continue
            row = latency[name]
            marker = "o" if row["kind"] == "ours" else "s"
            axis.scatter(row["p50_ms"], scores[metric], marker=marker, s=40, label=name)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(f"p50 latency at {resolution[0]}x{resolution[1]} (ms, log)")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    figure.suptitle("accuracy (synthetic val) vs latency: ours (circles) and OpenCV peers (squares)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_outputs(results: dict, out_dir: Path) -> list[Path]:
    """Write bench.png, bench.md and, last, bench.json into ``out_dir`` (each whole: renamed into
    place); -> their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in OUTPUT_NAMES]
    plot_accuracy_latency(results, results["settings"]["resolutions"][0], paths[2])
    write_text_atomic(paths[1], format_markdown(results))
    write_metrics(paths[0], results)  # NaN (no pixels in a region) -> null
    return paths
