"""Per-pixel displacement magnitudes of the training data beside those of real video, at the
scale of the node's 320 px wide network input (issue #25's target for the training distribution).

  training (real profile)   GT of pairs drawn by config/train_real_motion.yaml's data section
                            (256x192 crops at the 320x240 scale: magnitudes as they are)
  training (small profile)  GT of the bundled model's pairs (config/train_synthetic.yaml, 160x128,
                            x2 to the 320 px scale)
  sintel, flyingchairs      the GT flow of the shared pairs, scaled to 320 px width
  davis (DIS-estimated)     DIS-medium flow of every DAVIS_STEP-th pair of the 10 sequences at
                            320x180 (no GT flow exists there; DIS is the classical reference)

    python benchmarks/motion_histogram.py --out benchmarks/results/motion_histogram.json

writes the JSON (p50 / p90 / p95 / p99 and the share under 4 px per source) and a PNG beside it.
Real sources are skipped (reason printed) when ../shared/data is missing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from jointperception.config import load_config
from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences, flyingchairs_pairs, load_davis_sequence, sintel_pairs
from jointperception.data.synthetic import render_sequence
from jointperception.classical.opencv_flow import dis_flow

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

SCALE_WIDTH = 320
DAVIS_STEP = 5
PERCENTILES = (50, 90, 95, 99)
BINS = np.concatenate([[0.0], np.logspace(-1, np.log10(200.0), 60)])


def training_magnitudes(config: Path, pairs: int, scale: float) -> np.ndarray:
    """GT magnitudes of ``pairs`` training pairs of ``config``, times ``scale`` (to the 320 px scale)."""
    data = load_config(config).data
    values = [np.linalg.norm(render_sequence(data.train_seed + index, 2, data.height, data.width,
                                             max_translation=data.max_translation, motion=data.motion,
                                             photometric=False).flow_forward[0], axis=-1).ravel() * scale
              for index in range(pairs)]
    return np.concatenate(values)


def gt_magnitudes(pairs: list) -> np.ndarray:
    return np.concatenate([np.linalg.norm(pair.flow, axis=-1).ravel() * SCALE_WIDTH / pair.flow.shape[1]
                           for pair in pairs])


def davis_dis_magnitudes(root: Path) -> np.ndarray:
    values = []
    for name in davis_sequences(root):
        frames, _ = load_davis_sequence(root, name)
        size = (SCALE_WIDTH, round(SCALE_WIDTH * frames[0].shape[0] / frames[0].shape[1]))
        small = [cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames[::DAVIS_STEP]]
        for first, index in zip(small, range(0, len(frames) - 1, DAVIS_STEP)):
            second = cv2.resize(frames[index + 1], size, interpolation=cv2.INTER_AREA)
            values.append(np.linalg.norm(dis_flow(first, second, "medium"), axis=-1).ravel())
    return np.concatenate(values)


def summary(values: np.ndarray) -> dict[str, float]:
    result = {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}
    result["share_under_4px"] = float((values < 4.0).mean())
    result["pixels"] = int(values.size)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/motion_histogram.json"))
    parser.add_argument("--pairs", type=int, default=200, help="training pairs drawn per profile")
    args = parser.parse_args()
    configs = Path(__file__).resolve().parents[1] / "config"  # training recipes live in the checkout
    sources = {
        # 256x192 crops at the 320x240 scale: as they are; the bundled model's full 160x128 frames: x2
        "training (real profile)": training_magnitudes(configs / "train_real_motion.yaml", args.pairs, 1.0),
        "training (small profile, bundled)": training_magnitudes(configs / "train_synthetic.yaml", args.pairs,
                                                                 SCALE_WIDTH / 160),
    }
    root = shared_data_root()
    if root.is_dir():
        sources["sintel (GT)"] = gt_magnitudes(sintel_pairs(root / "sintel"))
        sources["flyingchairs (GT)"] = gt_magnitudes(flyingchairs_pairs(root / "flyingchairs"))
        sources["davis (DIS-medium)"] = davis_dis_magnitudes(root / "davis2016")
    else:
        print(f"real data not found at {root}: training sources only")
    results = {"scale": f"px at {SCALE_WIDTH} px width", "sources": {name: summary(v) for name, v in sources.items()}}
    for name, row in results["sources"].items():
        print(f"{name:36s} " + "  ".join(f"{key} {value:.3g}" for key, value in row.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name, values in sources.items():
        density, edges = np.histogram(values, bins=BINS)
        axis.step(edges[1:], density / values.size, where="pre", label=name)
    axis.set_xscale("log")
    axis.set_xlabel(f"displacement per frame, px at {SCALE_WIDTH} px width")
    axis.set_ylabel("share of pixels")
    axis.set_title("Training GT magnitudes beside real video")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=110)
    print(f"written {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
