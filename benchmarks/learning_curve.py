"""The learning curve of a training run: its real-suite figures (``train.real_eval_every`` lines
of metrics.jsonl) and synthetic validation against training hours, beside DIS-medium and the
acceptance bars of issue #25.

    python benchmarks/learning_curve.py --run runs/real_motion \
        --out benchmarks/results/learning_curve_real_motion.json

writes the points (JSON) and the plot (PNG beside it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

# DIS-medium on the same pairs (benchmarks/results/eval.json) and the FlyingChairs bar
REFERENCES = {"sintel_clean_epe": 8.40, "sintel_final_epe": 6.40, "flyingchairs_epe": 3.70}
FLYINGCHAIRS_BAR = 2.7
FLOW_KEYS = ("sintel_clean_epe", "sintel_final_epe", "flyingchairs_epe")


def read_curve(run_dir: Path) -> dict[str, list[dict]]:
    """metrics.jsonl -> {"real": [...], "val": [...]} records, in step order."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {kind: [r for r in records if r["kind"] == kind] for kind in ("real", "val")}


def plot(curve: dict[str, list[dict]], path: Path, title: str) -> None:
    figure, (flow_axis, mask_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    real = curve["real"]
    hours = [r["hours"] for r in real]
    for key, colour in zip(FLOW_KEYS, ("C0", "C1", "C2")):
        flow_axis.plot(hours, [r[key] for r in real], "o-", color=colour, label=key.removesuffix("_epe"))
        flow_axis.axhline(REFERENCES[key], color=colour, linestyle=":", linewidth=1)
    flow_axis.axhline(FLYINGCHAIRS_BAR, color="C2", linestyle="--", linewidth=1, label="FlyingChairs bar 2.7")
    flow_axis.set_xlabel("training hours")
    flow_axis.set_ylabel("EPE, px (dotted: DIS-medium)")
    flow_axis.legend(fontsize=8)
    mask_axis.plot(hours, [r["davis_dev_j"] for r in real], "o-", color="C3", label="DAVIS dev 7, fused per pair")
    val = curve["val"]
    if val:
        mask_axis.plot([r["hours"] for r in val], [r["mask_j"] for r in val], ".-", color="C4", alpha=0.6,
                       label="synthetic val mask J")
    mask_axis.set_xlabel("training hours")
    mask_axis.set_ylabel("J")
    mask_axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder holding metrics.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write (the PNG goes beside it)")
    args = parser.parse_args()
    curve = read_curve(args.run)
    if not curve["real"]:
        raise SystemExit(f"{args.run / 'metrics.jsonl'}: no real-suite lines yet (train.real_eval_every)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"run": str(args.run), "references_dis_medium": REFERENCES,
                                    "flyingchairs_bar": FLYINGCHAIRS_BAR, **curve}, indent=1) + "\n")
    plot(curve, args.out.with_suffix(".png"), f"learning curve: {args.run.name}")
    for record in curve["real"]:
        print(f"{record['hours']:.2f} h  step {record['step']:6d}  " +
              "  ".join(f"{key} {record[key]:.3f}" for key in (*FLOW_KEYS, "davis_dev_j")))


if __name__ == "__main__":
    main()
