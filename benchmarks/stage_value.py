"""Do the classical stages around the network still pay for themselves, and does int8 hold? Pre-alignment
and the variational flow refinement, each switched off, and the int8 graph, for one model, on
development data only.

    OMP_NUM_THREADS=1 python benchmarks/stage_value.py --model runs/real_motion/best.pt \
        [--pairs 60] [--runs 20] [--variants default int8] --out benchmarks/results/stage_value.json

Variants: the pipeline as the node runs it (``default``), ``no_prealign``, ``no_refine``,
``neither`` and ``int8`` (default stages, the int8 graph). Per variant, at the node's 320x240
network size and backend (ONNX Runtime on the CPU):
  synthetic_epe, synthetic_j   flow EPE and fused-mask J over ``--pairs`` scenes of the "real"
                               motion profile rendered at 320x240 from the validation seeds of
                               config/train_real_motion.yaml (GT flow image 1 -> image 2)
  davis_dev_j                  fused-mask J per pair on the 7 DAVIS sequences outside the held-out
                               three, every 5th frame (the learning curve's figure)
  infer_pair_p50_ms            the whole pair, timed round-robin over the variants
Sintel, FlyingChairs and the held-out DAVIS sequences are not used: they are the acceptance suites.
The rule that reads this is written in docs/real_motion.md. Prints a table, writes JSON; no asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from jointperception.config import load_config
from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences
from jointperception.data.synthetic import render_sequence
from jointperception.eval.davis_eval import per_pair, score_sequences
from jointperception.eval.dev_suites import DAVIS_FRAME_STEP, NETWORK_SIZE
from jointperception.eval.held_out import HELD_OUT_DAVIS
from jointperception.eval.metrics import flow_errors, jaccard
from jointperception.outputs import write_text_atomic
from jointperception.runtime.pipeline import PerceptionPipeline

CONFIG = Path(__file__).resolve().parent.parent / "config" / "train_real_motion.yaml"
VARIANTS = {
    "default": {"prealign": True, "refine": True, "precision": "fp32"},
    "no_prealign": {"prealign": False, "refine": True, "precision": "fp32"},
    "no_refine": {"prealign": True, "refine": False, "precision": "fp32"},
    "neither": {"prealign": False, "refine": False, "precision": "fp32"},
    "int8": {"prealign": True, "refine": True, "precision": "int8"},
}


def synthetic_scores(pipeline: PerceptionPipeline, scenes: list) -> dict[str, float]:
    """Mean flow EPE and fused-mask J over rendered two-frame scenes."""
    epe, j = [], []
    for scene in scenes:
        result = pipeline.infer_pair(scene.frames[0], scene.frames[1])
        epe.append(flow_errors(result.flow, scene.flow_forward[0])["epe_all"])
        j.append(jaccard(result.mask, scene.masks[0]))
    return {"synthetic_epe": float(np.mean(epe)), "synthetic_j": float(np.mean(j))}


def interleaved_p50_ms(pipelines: dict[str, PerceptionPipeline], pair: tuple[np.ndarray, np.ndarray], runs: int) -> dict[str, float]:
    """Median ms of ``infer_pair`` per variant, round-robin after 3 warm-up rounds."""
    times = {name: [] for name in pipelines}
    for round_index in range(runs + 3):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            pipeline.infer_pair(*pair)
            if round_index >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="safetensors model or training checkpoint")
    parser.add_argument("--pairs", type=int, default=60, help="rendered real-profile scenes")
    parser.add_argument("--runs", type=int, default=20, help="timed rounds")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="what to measure")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stage_value.json"))
    args = parser.parse_args()

    data_cfg = load_config(CONFIG).data
    width, height = NETWORK_SIZE
    scenes = [render_sequence(data_cfg.val_seed + index, 2, height, width, max_objects=data_cfg.max_objects,
                              max_translation=data_cfg.max_translation, motion=data_cfg.motion)
              for index in range(args.pairs)]
    pipelines = {name: PerceptionPipeline.from_model_file(args.model, "onnxruntime", "cpu", NETWORK_SIZE,
                                                          threads=args.threads, **VARIANTS[name])
                 for name in args.variants}
    davis_root = shared_data_root() / "davis2016"
    dev = [name for name in davis_sequences(davis_root) if name not in HELD_OUT_DAVIS]

    scores = {}
    for name, pipeline in pipelines.items():
        fused = per_pair(lambda a, b, p=pipeline: p.infer_pair(a, b).mask)
        davis = score_sequences(davis_root, {"fused": fused}, sequences=dev, frame_step=DAVIS_FRAME_STEP)
        scores[name] = {**synthetic_scores(pipeline, scenes), "davis_dev_j": davis["fused"]["j_mean"]}
        print(name, {k: round(v, 4) for k, v in scores[name].items()}, flush=True)
    timing = interleaved_p50_ms(pipelines, (scenes[0].frames[0], scenes[0].frames[1]), args.runs)
    for name in args.variants:
        scores[name]["infer_pair_p50_ms"] = timing[name]

    result = {
        "command": f"OMP_NUM_THREADS=1 python benchmarks/stage_value.py --model {args.model} --pairs {args.pairs} "
                   f"--variants {' '.join(args.variants)}",
        "model": str(args.model), "network_size": f"{width}x{height}", "threads": args.threads,
        "davis_dev_sequences": dev, "load_average_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "variants": scores,
    }
    print(f"{'variant':<12} {'syn EPE':>8} {'syn J':>6} {'DAVIS dev J':>11} {'p50 ms':>7}")
    for name, row in scores.items():
        print(f"{name:<12} {row['synthetic_epe']:8.3f} {row['synthetic_j']:6.3f} {row['davis_dev_j']:11.3f} "
              f"{row['infer_pair_p50_ms']:7.1f}")
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
