"""Where the DAVIS gap comes from: the flow, or the rule that turns flow into a mask.

Two flows of the same frame pairs at the network size (320x240) -- the bundled joint network's (through
the runtime pipeline: pre-alignment and flow refinement) and OpenCV DIS-medium's on the same resized
frames -- each turned into a moving-object mask by two
segmenters:

  motion_net  the bundled MotionLayerNet as in the fused graph (flow average-pooled to the
              motion grid, largest layer = background, mask = 1 - g_background > 0.5)
  classical   the classical reference's rule (robust dominant affine -> Otsu residual -> largest
              connected component; ``classical.motion_segmentation``)

Every mask is scored at 320x240 against the annotation (nearest-resized). The joint network's own
published masks come from the full graph and are in ``benchmarks/results/eval.json``; the
classical reference there runs DIS at full resolution (J 0.463).

    OMP_NUM_THREADS=1 python benchmarks/davis_gap.py --frame-step 5 --out benchmarks/results/davis_gap.json

Skips (exit 0, reason printed) when the DAVIS folder is missing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from jointperception.classical.motion_segmentation import classical_motion_segmentation
from jointperception.classical.opencv_flow import dis_flow
from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences, load_davis_sequence
from jointperception.eval.davis_eval import pair_indices
from jointperception.eval.metrics import jaccard
from jointperception.models.blocks import channel_softmax
from jointperception.models.motionnet import MotionLayerNet
from jointperception.models.perception import motion_grid_flow, motion_stride_for
from jointperception.models.weights import DEFAULT_MOTION_MODEL_PATH, load_motion_model
from jointperception.runtime.motion_layers import split_layers
from jointperception.runtime.pipeline import PerceptionPipeline, padded_size

NETWORK_SIZE = (320, 240)
FLOWS = ("ours", "dis_medium")
SEGMENTERS = ("motion_net", "classical")
HELD_OUT = ("blackswan", "cows", "kite-surf")  # never photo textures (config/train_synthetic_photo*.yaml)


@torch.no_grad()
def motion_net_mask(net: MotionLayerNet, flow: np.ndarray) -> np.ndarray:
    """flow (H, W, 2) float32 px at the network size -> (H, W) bool: every non-background layer,
    the flow edge-padded to the network's padded size as the graph's input would be."""
    height, width = flow.shape[:2]
    pad_w, pad_h = padded_size((width, height))
    field = torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None]
    field = F.pad(field, (0, pad_w - width, 0, pad_h - height), mode="replicate")
    logits = net(motion_grid_flow(field, motion_stride_for(pad_w)), output_size=field.shape[-2:])
    _, moving = split_layers(channel_softmax(logits).numpy(), height, width)
    return moving[0, 0, :height, :width] > 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=shared_data_root() / "davis2016")
    parser.add_argument("--model", type=Path, default=None, help="joint model (default: the bundled one)")
    parser.add_argument("--motion-model", type=Path, default=DEFAULT_MOTION_MODEL_PATH)
    parser.add_argument("--frame-step", type=int, default=5, help="score every k-th frame")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/davis_gap.json"))
    args = parser.parse_args()
    if not (args.root / "JPEGImages").is_dir():
        print(f"skipped: no DAVIS data at {args.root} (expected JPEGImages/ and Annotations/)")
        return
    if args.frame_step < 1:
        parser.error("--frame-step must be >= 1")
    torch.set_num_threads(args.threads)
    pipeline = PerceptionPipeline.from_model_file(args.model, "torch", network_size=NETWORK_SIZE)
    motion_net, _, _ = load_motion_model(args.motion_model)
    motion_net.eval()
    segment = {"motion_net": lambda flow: motion_net_mask(motion_net, flow), "classical": classical_motion_segmentation}
    per_sequence: dict[str, dict[str, float]] = {}
    for sequence in davis_sequences(args.root):
        frames, masks = load_davis_sequence(args.root, sequence)
        scores: dict[str, list[float]] = {f"{flow}/{rule}": [] for flow in FLOWS for rule in SEGMENTERS}
        for i, partner in pair_indices(len(frames))[:: args.frame_step]:
            first, second = (cv2.resize(frames[k], NETWORK_SIZE, interpolation=cv2.INTER_AREA) for k in (i, partner))
            truth = cv2.resize(masks[i].astype(np.uint8), NETWORK_SIZE, interpolation=cv2.INTER_NEAREST) > 0
            flows = {"ours": pipeline.infer_pair(first, second).flow, "dis_medium": dis_flow(first, second)}
            for flow_name, flow in flows.items():
                for rule in SEGMENTERS:
                    scores[f"{flow_name}/{rule}"].append(jaccard(segment[rule](flow), truth))
        per_sequence[sequence] = {name: float(np.mean(values)) for name, values in scores.items()}
        print(sequence, {name: round(value, 3) for name, value in per_sequence[sequence].items()})
    names = list(next(iter(per_sequence.values())))
    summary = {
        name: {
            "j_mean": float(np.mean([scores[name] for scores in per_sequence.values()])),
            "j_held_out": float(np.mean([per_sequence[s][name] for s in HELD_OUT if s in per_sequence])),
        }
        for name in names
    }
    print("| flow | segmenter | J (10 seq.) | J (held-out 3) |\n|---|---|---|---|")
    for name, values in summary.items():
        flow, rule = name.split("/")
        print(f"| {flow} | {rule} | {values['j_mean']:.3f} | {values['j_held_out']:.3f} |")
    args.out.write_text(json.dumps({
        "setup": {"model": str(args.model or "bundled"), "motion_model": str(args.motion_model),
                  "network_size": list(NETWORK_SIZE), "frame_step": args.frame_step, "held_out": list(HELD_OUT),
                  "prealign": pipeline.prealign, "refine_flow": pipeline.refine},
        "summary": summary, "per_sequence": per_sequence}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
