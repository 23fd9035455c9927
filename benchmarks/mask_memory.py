"""What the mask memory (``runtime.mask_memory``) does to the published mask of a stream.

Every sequence runs as the node runs it (``eval.davis_eval.streaming``: pair (newest, previous),
one MaskMemory per sequence) at each memory weight, with the bundled models at 320x240:

  davis      the 10 DAVIS-2016 sequences (every frame scored); the weight is chosen on the 7
             outside the held-out 3 (blackswan, cows, kite-surf: never photo textures), which are
             reported apart
  synthetic  procedural scenes (seeds 20000000+, never trained on) of 16 frames at 320x240 with
             1-4 movers, scored against their exact moving-object masks

    OMP_NUM_THREADS=1 python benchmarks/mask_memory.py --out benchmarks/results/mask_memory.json

DAVIS is skipped (reason printed) when its folder is missing; the synthetic part always runs.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jointperception.data.paths import shared_data_root
from jointperception.data.synthetic import render_sequence
from jointperception.eval.davis_eval import score_sequences, streaming
from jointperception.eval.metrics import jaccard
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT
from jointperception.runtime.pipeline import PerceptionPipeline

NETWORK_SIZE = (320, 240)
HELD_OUT = ("blackswan", "cows", "kite-surf")
SYNTHETIC_SEED = 20_000_000  # far from every training seed (0..399999) and the validation split (10000000+)
SYNTHETIC_FRAMES = 16


def synthetic_stream_j(pipeline: PerceptionPipeline, weight: float, sequences: int) -> float:
    """Mean over sequences of the mean J of the streamed masks (frames 0..T-1) against the GT."""
    predict = streaming(pipeline, weight)
    scores = []
    for index in range(sequences):
        sequence = render_sequence(SYNTHETIC_SEED + index, SYNTHETIC_FRAMES, NETWORK_SIZE[1], NETWORK_SIZE[0])
        frames = list(sequence.frames)
        masks = predict(frames, list(range(len(frames))))
        scores.append(np.mean([jaccard(mask, truth) for mask, truth in zip(masks, sequence.masks, strict=True)]))
    return float(np.mean(scores))


def davis_stream_j(pipeline: PerceptionPipeline, weight: float, root: Path) -> dict[str, object]:
    result = score_sequences(root, {"stream": streaming(pipeline, weight)})["stream"]
    per_sequence = result["per_sequence_j"]
    others = [j for name, j in per_sequence.items() if name not in HELD_OUT]
    return {"j_mean": result["j_mean"], "j_other_7": float(np.mean(others)),
            "j_held_out": float(np.mean([per_sequence[name] for name in HELD_OUT if name in per_sequence])),
            "per_sequence_j": per_sequence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, DEFAULT_MEMORY_WEIGHT, 0.8, 0.9])
    parser.add_argument("--synthetic-sequences", type=int, default=20)
    parser.add_argument("--root", type=Path, default=shared_data_root() / "davis2016")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mask_memory.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = PerceptionPipeline.from_model_file(None, "torch", network_size=NETWORK_SIZE)
    davis = (args.root / "JPEGImages").is_dir()
    if not davis:
        print(f"DAVIS skipped: no data at {args.root} (expected JPEGImages/ and Annotations/)")
    rows = []
    print("| memory weight | synthetic J | DAVIS J (10) | other 7 | held-out 3 | s |\n|---|---|---|---|---|---|")
    for weight in args.weights:
        start = time.perf_counter()
        row: dict[str, object] = {"weight": weight,
                                  "synthetic_j": synthetic_stream_j(pipeline, weight, args.synthetic_sequences)}
        if davis:
            row["davis"] = davis_stream_j(pipeline, weight, args.root)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        d = row.get("davis", {})
        cells = [f"{d[k]:.3f}" if d else "-" for k in ("j_mean", "j_other_7", "j_held_out")]
        print(f"| {weight:.2f} | {row['synthetic_j']:.3f} | {' | '.join(cells)} | {row['seconds']:.0f} |", flush=True)
    args.out.write_text(json.dumps({
        "setup": {"network_size": list(NETWORK_SIZE), "default_weight": DEFAULT_MEMORY_WEIGHT, "held_out": list(HELD_OUT),
                  "synthetic_sequences": args.synthetic_sequences, "synthetic_frames": SYNTHETIC_FRAMES,
                  "synthetic_seed": SYNTHETIC_SEED, "threads": args.threads},
        "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
