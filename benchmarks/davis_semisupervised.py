"""DAVIS-2016 semi-supervised: J without a first mask, with online fine-tuning on frame 0's mask
(``predict --first-mask``), and with flip averaging ("Ours²"), plus the fine-tuning time.

Every method is scored on frames 1..N-1 of each sequence (frame 0's mask is the given one), with
the pairs of ``eval.davis_eval.pair_indices`` (frame i with i+1, the last with the one before):

  unsupervised        bundled model, no first mask (the fused mask, ``predict``'s default)
  unsupervised_flip   bundled model, flip averaging
  finetuned           bundled model fine-tuned on (frame 0, its mask) for this sequence (the
                      segmentation-branch mask, per pair: what ``predict --first-mask`` published
                      before it followed the object; now benchmarks/davis_first_mask.py)
  finetuned_flip      the fine-tuned model with flip averaging (SegFlow's "Ours²")

    OMP_NUM_THREADS=2 python benchmarks/davis_semisupervised.py --threads 2 [--frame-step 1]

Skips (exit 0, reason printed) when the DAVIS folder is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from jointperception.commands.predict import parse_size
from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences, load_davis_sequence
from jointperception.eval.davis_eval import pair_indices
from jointperception.eval.metrics import jaccard, summarize_sequences
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.train.online_finetune import FinetuneSettings, finetune_segmentation

METHODS = ("unsupervised", "unsupervised_flip", "finetuned", "finetuned_flip")


def score(pipeline: PerceptionPipeline, frames: list[np.ndarray], masks: list[np.ndarray], step: int) -> list[float]:
    """J of frames 1, 1 + step, 1 + 2 step ... <= N-1 of one sequence."""
    pairs = pair_indices(len(frames))[1::step]
    return [jaccard(pipeline.infer_pair(frames[i], frames[p]).mask, masks[i]) for i, p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=shared_data_root() / "davis2016")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--network-size", type=parse_size, default=(320, 240), metavar="WxH")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--finetune-iters", type=int, default=FinetuneSettings().iterations)
    parser.add_argument("--finetune-seconds", type=float, default=FinetuneSettings().seconds)
    parser.add_argument("--sequences", nargs="+", default=None, help="default: every sequence")
    parser.add_argument("--frame-step", type=int, default=1, help="score every k-th frame (faster, noisier)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/davis_semisupervised.json"))
    args = parser.parse_args()
    if not (args.root / "JPEGImages").is_dir():
        print(f"skipped: no DAVIS data at {args.root} (expected JPEGImages/ and Annotations/)")
        return
    torch.set_num_threads(args.threads)
    settings = FinetuneSettings(iterations=args.finetune_iters, seconds=args.finetune_seconds)
    model = load_model(args.model)[0]
    bundled = TorchBackend(model)
    load_before = os.getloadavg()[0]
    j_values: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    per_sequence: dict[str, dict[str, float]] = {}
    for sequence in args.sequences or davis_sequences(args.root):
        frames, masks = load_davis_sequence(args.root, sequence)
        tuned = finetune_segmentation(model, frames[0], masks[0], args.network_size, settings)
        backends = {"unsupervised": bundled, "finetuned": TorchBackend(tuned.model)}
        for method in METHODS:
            pipeline = PerceptionPipeline(
                backends[method.removesuffix("_flip")], args.network_size, flip_average=method.endswith("_flip"),
                mask_source="segmentation" if method.startswith("finetuned") else "fused",
            )
            j_values[method][sequence] = score(pipeline, frames, masks, args.frame_step)
        per_sequence[sequence] = {
            **{f"j_{m}": float(np.mean(j_values[m][sequence])) for m in METHODS},
            "finetune_seconds": tuned.seconds,
            "finetune_iterations": tuned.iterations,
            "scored_frames": len(j_values["finetuned"][sequence]),
        }
        print(sequence, json.dumps({k: round(v, 3) for k, v in per_sequence[sequence].items()}), flush=True)
    results = {
        "setup": {
            "model": str(args.model),
            "network_size": list(args.network_size),
            "threads": args.threads,
            "finetune": {"max_iterations": settings.iterations, "max_seconds": settings.seconds,
                         "learning_rate": settings.learning_rate, "batch_size": settings.batch_size},
            "frames": f"1..N-1 of each sequence, every {args.frame_step}",
            "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "summary": {m: summarize_sequences(j_values[m], "j") for m in METHODS},
        "mean_finetune_seconds": float(np.mean([s["finetune_seconds"] for s in per_sequence.values()])),
        "per_sequence": per_sequence,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| sequence | J unsup. | J unsup.+flip | J fine-tuned | J fine-tuned+flip | fine-tune s (steps) |")
    print("|---|---|---|---|---|---|")
    for name, s in per_sequence.items():
        print(f"| {name} | {s['j_unsupervised']:.3f} | {s['j_unsupervised_flip']:.3f} | {s['j_finetuned']:.3f} | "
              f"{s['j_finetuned_flip']:.3f} | {s['finetune_seconds']:.1f} ({s['finetune_iterations']}) |")
    means = [results["summary"][m]["j_mean"] for m in METHODS]
    print(f"| **mean** | {' | '.join(f'{v:.3f}' for v in means)} | {results['mean_finetune_seconds']:.1f} |")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
