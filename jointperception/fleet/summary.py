"""The fleet summary: fleet.json (per-bag metrics, pooled latency, the worst bags, failures with
their causes) and fleet_report.html, one self-contained page with its plots as base64 PNG."""
from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from jointperception.eval.report import latency_stats
from jointperception.fleet.task import DONE, FAILED, SKIPPED
from jointperception.outputs import write_text_atomic

WORST_SHOWN = 10
Outcome = Mapping[str, object]


def _bag_row(outcome: Outcome) -> dict[str, object]:
    """One bag's line of the summary: status, cause, throughput, latency and GT scores."""
    row: dict[str, object] = {"name": outcome["name"], "bag": outcome["bag"], "status": outcome["status"]}
    if outcome["status"] == FAILED:  # "detail": Ray's full report (a traceback) where Ray gave one
        return {**row, "error": outcome["error"], **({"detail": outcome["detail"]} if "detail" in outcome else {})}
    metrics = outcome["metrics"]
    gt = metrics["gt"]
    return {**row, "report": f"{outcome['name']}/report.html", "frames": metrics["frames"],
            "throughput_fps": metrics["throughput_fps"], "latency_ms": metrics["latency_ms"],
            "mask_j_mean": gt.get("mask", {}).get("j_mean"), "flow_epe_all": gt.get("flow", {}).get("epe_all"),
            "task_s": outcome["task_s"], "warnings": metrics.get("warnings", [])}


def _worst(rows: Sequence[Mapping[str, object]]) -> tuple[str, list[str]]:
    """(criterion, names worst first): lowest mask J when bags have mask GT, else highest p99 latency."""
    scored = [row for row in rows if row["status"] != FAILED and row["mask_j_mean"] is not None]
    if scored:
        return "mask j_mean, lowest first", [row["name"] for row in sorted(scored, key=lambda r: r["mask_j_mean"])]
    timed = [row for row in rows if row["status"] != FAILED]
    return "latency p99 (ms), highest first", [
        row["name"] for row in sorted(timed, key=lambda r: -(r["latency_ms"]["p99"] or 0.0))]


def fleet_summary(outcomes: Sequence[Outcome], facts: Mapping[str, object], wall_s: float) -> dict[str, object]:
    """The fleet.json content: ``facts`` (command, model, settings, Ray), counts, pooled latency
    over every processed frame, the worst bags, the failures and one row per bag (input order)."""
    rows = [_bag_row(outcome) for outcome in outcomes]
    counts = Counter(outcome["status"] for outcome in outcomes)
    latencies = [value for outcome in outcomes if outcome["status"] != FAILED for value in outcome["frame_latency_ms"]]
    criterion, worst = _worst(rows)
    return {
        **facts,
        "bags": len(outcomes),
        "counts": {status: counts[status] for status in (DONE, SKIPPED, FAILED)},
        "wall_s": wall_s,
        "frames_processed": sum(row["frames"].get("processed", 0) for row in rows if row["status"] != FAILED),
        "latency_ms": latency_stats(latencies),
        "worst_by": criterion,
        "worst": worst[:WORST_SHOWN],
        "failures": [{"name": row["name"], "bag": row["bag"], "cause": row["error"]} for row in rows
                     if row["status"] == FAILED],
        "warnings": [{"name": row["name"], "bag": row["bag"], "warning": warning} for row in rows
                     if row["status"] != FAILED for warning in row["warnings"]],  # shorter than declared
        "per_bag": rows,
    }


def _png(figure: object) -> str:
    """A matplotlib Figure as an <img> with its PNG inline (base64)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _per_bag_figure(rows: Sequence[Mapping[str, object]]) -> str:
    """Horizontal bars per bag: throughput, and mask J / flow EPE where the bags have GT."""
    from matplotlib.figure import Figure

    rows = [row for row in rows if row["status"] != FAILED]
    series = [("throughput_fps", "frames / s")] + [
        (key, label) for key, label in (("mask_j_mean", "mask J (mean)"), ("flow_epe_all", "flow EPE (px)"))
        if any(row[key] is not None for row in rows)]
    names = [str(row["name"]) for row in rows]
    figure = Figure(figsize=(4 * len(series), 1.0 + 0.3 * len(rows)), dpi=100)
    for position, (key, label) in enumerate(series, start=1):
        axes = figure.add_subplot(1, len(series), position)
        axes.barh(names, [math.nan if row[key] is None else row[key] for row in rows])
        axes.invert_yaxis()
        axes.set(xlabel=label)
        axes.grid(alpha=0.3, axis="x")
        if position > 1:
            axes.tick_params(labelleft=False)
    figure.tight_layout()
    return _png(figure)


def _latency_figure(outcomes: Sequence[Outcome]) -> str:
    """Histogram of every frame's latency, and one box per bag."""
    from matplotlib.figure import Figure

    done = [outcome for outcome in outcomes if outcome["status"] != FAILED and outcome["frame_latency_ms"]]
    figure = Figure(figsize=(10, 1.5 + 0.3 * len(done)), dpi=100)
    histogram, boxes = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    histogram.hist([value for outcome in done for value in outcome["frame_latency_ms"]], bins=40)
    histogram.set(xlabel="latency per frame (ms)", ylabel="frames", title="all bags")
    boxes.boxplot([outcome["frame_latency_ms"] for outcome in done], orientation="horizontal",
                  tick_labels=[str(outcome["name"]) for outcome in done])
    boxes.invert_yaxis()
    boxes.set(xlabel="latency per frame (ms)", title="per bag")
    for axes in (histogram, boxes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_fleet_report(path: Path, summary: Mapping[str, object], outcomes: Sequence[Outcome]) -> Path:
    """``path`` (an .html beside the bags' sub-folders): facts, the worst bags, failures and
    their causes, per-bag metrics with links to each bag's report, and the plots."""
    rows = summary["per_bag"]
    by_name = {row["name"]: row for row in rows}
    latency = summary["latency_ms"]
    facts = {k: v for k, v in summary.items() if not isinstance(v, (Mapping, list))}
    sections = ["<h2>Run</h2>", _table(("fact", "value"), list(facts.items())),
                "<h2>Bags</h2>", _table(("done", "skipped (complete already)", "failed"), [list(summary["counts"].values())]),
                "<h2>Latency over all frames (ms)</h2>", _table(tuple(latency), [list(latency.values())])]
    sections += [f"<h2>Failures ({len(summary['failures'])})</h2>",
                 _table(("bag", "cause"), [(f["bag"], f["cause"]) for f in summary["failures"]])
                 if summary["failures"] else "<p>None.</p>"]
    sections += [f"<h2>Warnings ({len(summary['warnings'])}): bags shorter than they declare</h2>",
                 _table(("bag", "warning"), [(w["bag"], w["warning"]) for w in summary["warnings"]])
                 if summary["warnings"] else "<p>None.</p>"]
    sections += [f"<h2>Worst bags ({html.escape(str(summary['worst_by']))})</h2>",
                 _table(("rank", "bag", "mask J", "flow EPE", "p99 latency (ms)"),
                        [(rank, name, by_name[name]["mask_j_mean"], by_name[name]["flow_epe_all"],
                          by_name[name]["latency_ms"]["p99"]) for rank, name in enumerate(summary["worst"], start=1)])]
    listing = "".join(
        f"<tr><td>{_cell(row['name'])}</td><td>{_cell(row['status'])}</td>"
        + (f"<td colspan=\"5\">{_cell(row['error'])}</td>" if row["status"] == FAILED else
           f"<td>{_cell(row['frames'].get('processed', 0))}</td><td>{_cell(row['throughput_fps'])}</td>"
           f"<td>{_cell(row['mask_j_mean'])}</td><td>{_cell(row['flow_epe_all'])}</td>"
           f"<td><a href=\"{html.escape(str(row['report']))}\">report</a></td>")
        + "</tr>" for row in rows)
    sections += ["<h2>Per bag</h2>", "<table><tr><th>bag</th><th>status</th><th>frames</th><th>fps</th>"
                 f"<th>mask J</th><th>flow EPE</th><th>report</th></tr>{listing}</table>"]
    if any(row["status"] != FAILED for row in rows):
        sections += ["<h2>Per-bag metrics</h2>", _per_bag_figure(rows),
                     "<h2>Latency distribution</h2>", _latency_figure(outcomes)]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}" \
            "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}"
    return write_text_atomic(path, f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>jointperception "
                             f"replay-fleet</title><style>{style}</style></head><body><h1>jointperception replay-fleet"
                             f"</h1>{''.join(sections)}</body></html>\n")
