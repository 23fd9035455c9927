"""First-mask mode (``runtime.object_memory``) against the unsupervised streamed mask, on DAVIS-2016
and on synthetic scenes; the setup (fine-tuning) time and the per-frame cost on this CPU.

Every sequence runs as the node, ``replay`` and ``predict --first-mask`` run it: frame i > 0 from the
pair (i, i - 1), frame 0 from (0, 1).

  first_mask    the model fine-tuned on (frame 0, its mask) (``train.online_finetune``, the bounds of
                ``predict``), the object carried from frame 0's mask by ``ObjectMemory`` (the rule of
                docs/first_mask.md)
  unsupervised  the bundled model, the fused mask with the default mask memory (``predict``'s and
                the node's default, streamed); ``score`` only

Both are scored with J on frames 1..N-1 (frame 0's mask is the given one).

    tune   the 7 DAVIS sequences outside blackswan / cows / kite-surf plus synthetic scenes: the
           network outputs of each frame are cached once (``--cache``), then every rule of the
           grid is scored on the cache -> benchmarks/results/davis_first_mask_tune.json
    cues   J of the appearance cue alone and of the motion cue alone on the same cache (dev DAVIS)
           -> benchmarks/results/davis_first_mask_cues.json
    score  all 10 DAVIS sequences once with the default rule (``ObjectRule()``), the held-out 3
           reported apart -> benchmarks/results/davis_first_mask.json

    OMP_NUM_THREADS=1 nice python benchmarks/davis_first_mask.py tune --cache /tmp/first_mask_cache
    OMP_NUM_THREADS=1 nice python benchmarks/davis_first_mask.py score

Sequences run two at a time (``--workers``, one torch thread each), so timings include that contention.

DAVIS is skipped (reason printed) when its folder is missing.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences, load_davis_sequence
from jointperception.data.synthetic import render_sequence
from jointperception.eval.metrics import jaccard
from jointperception.models.jointnet import JointNet
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, MaskMemory
from jointperception.runtime.object_memory import ObjectMemory, ObjectRule
from jointperception.runtime.pipeline import PerceptionPipeline, restore_probability
from jointperception.train.online_finetune import FinetuneSettings, finetune_segmentation

NETWORK_SIZE = (320, 240)
HELD_OUT = ("blackswan", "cows", "kite-surf")
SYNTHETIC_SEED = 30_000_000  # far from every training seed (0..399999), validation (10000000+) and mask_memory's
SYNTHETIC_FRAMES = 16
SYNTHETIC_CASES: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}  # tune: filled before the workers fork
# the sixth grid, on the cache of the fine-tuning that finishes its steps: regions where both cues agree
# join whole (docs/first_mask.md, third round; the first three grids, on the cache of a fine-tuning cut at
# 45 s, reached dev DAVIS J 0.498, 0.564, 0.558; the fourth, without growth, 0.591; the fifth, with
# pixel-wise growth, 0.594)
GRID = {"carry_weight": (0.5,), "reach_px": (4, 8, 16), "motion_weight": (0.5,), "growth_weight": (0.0,),
        "join_fraction": (0.0, 0.2, 0.3, 0.4, 0.6, 0.8), "collapse_fraction": (0.4,), "min_appearance": (0.0,)}
SYNTHETIC_TOLERANCE = 0.1  # eligible rules: synthetic J within this of the best synthetic J


class RecordingObjectMemory(ObjectMemory):
    """An ObjectMemory that also keeps the inputs of every update (float16 / bool), to replay rules."""

    def __init__(self, rule: ObjectRule = ObjectRule()) -> None:
        super().__init__(rule)
        self.inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, appearance: np.ndarray, motion: np.ndarray, flow_to_previous: np.ndarray, occluded: np.ndarray,
               camera_size: tuple[int, int]) -> np.ndarray:
        self.inputs.append((appearance.astype(np.float16), motion.astype(np.float16),
                            flow_to_previous.astype(np.float16), occluded.copy()))
        return super().update(appearance, motion, flow_to_previous, occluded, camera_size)


def stream_object(pipeline: PerceptionPipeline, frames: list[np.ndarray], given: np.ndarray,
                  memory: ObjectMemory) -> tuple[list[np.ndarray], list[str], list[float]]:
    """The node's order over ``frames``, the object given for frame 0 -> (masks of frames 1..N-1,
    their sources, latency ms of every frame)."""
    memory.give(given, newest=True)
    masks, sources, latencies = [], [], []
    for i in range(len(frames)):
        out = pipeline.infer_pair(frames[i], frames[i - 1 if i > 0 else 1], memory)
        latencies.append(out.latency_ms)
        if i > 0:
            masks.append(out.mask)
            sources.append(memory.source)
    return masks, sources, latencies


def stream_unsupervised(pipeline: PerceptionPipeline, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    """The default streamed mask (mask memory) of frames 1..N-1, latency ms of every frame."""
    memory = MaskMemory(DEFAULT_MEMORY_WEIGHT)
    outputs = [pipeline.infer_pair(frames[i], frames[i - 1 if i > 0 else 1], memory) for i in range(len(frames))]
    return [out.mask for out in outputs[1:]], [out.latency_ms for out in outputs]


def replay_rule(rule: ObjectRule, inputs: list, given: np.ndarray, camera_size: tuple[int, int]) -> list[np.ndarray]:
    """A rule over cached update inputs (frame 0 first) -> masks of frames 1..N-1 at camera size."""
    memory = ObjectMemory(rule)
    memory.give(given, newest=True)
    masks = []
    for index, (appearance, motion, flow, occluded) in enumerate(inputs):
        probability = memory.update(appearance.astype(np.float32), motion.astype(np.float32),
                                    flow.astype(np.float32), occluded, camera_size)
        if index > 0:
            masks.append(restore_probability(probability[None, None], NETWORK_SIZE, camera_size) > 0.5)
    return masks


def mean_j(masks: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([jaccard(mask, gt) for mask, gt in zip(masks, truth, strict=True)]))


def finetuned(model: JointNet, frame: np.ndarray, mask: np.ndarray) -> tuple[PerceptionPipeline, dict[str, float]]:
    """(the fine-tuned pipeline, its setup record) with ``predict``'s fine-tuning bounds."""
    result = finetune_segmentation(model, frame, mask, NETWORK_SIZE, FinetuneSettings())
    pipeline = PerceptionPipeline(TorchBackend(result.model), NETWORK_SIZE)
    return pipeline, {"finetune_seconds": result.seconds, "finetune_iterations": result.iterations}


def synthetic_cases(count: int) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """(name, frames, masks of the followed object) of scenes with 2+ movers: the object followed is
    layer 1; the unsupervised mode is scored against the same object."""
    cases = []
    seed = SYNTHETIC_SEED
    while len(cases) < count:
        scene = render_sequence(seed, SYNTHETIC_FRAMES, NETWORK_SIZE[1], NETWORK_SIZE[0])
        if scene.layers.max() >= 2 and (scene.layers[0] == 1).any():
            cases.append((f"synthetic_{seed}", list(scene.frames), list(scene.layers == 1)))
        seed += 1
    return cases


def cache_case(task: tuple[str, str, Path, Path, int]) -> str:
    """One dev sequence's update inputs, cached to ``cache/<name>.npz`` (a worker process)."""
    name, kind, root, cache, threads = task
    path = cache / f"{name}.npz"
    if not path.exists():
        torch.set_num_threads(threads)
        model = load_model(DEFAULT_MODEL_PATH)[0]
        frames, masks = load_davis_sequence(root, name) if kind == "davis" else SYNTHETIC_CASES[name]
        pipeline = (finetuned(model, frames[0], masks[0])[0] if kind == "davis"
                    else PerceptionPipeline(TorchBackend(model), NETWORK_SIZE))
        recorder = RecordingObjectMemory()
        stream_object(pipeline, frames, masks[0], recorder)
        np.savez(path, *[np.stack(column) for column in zip(*recorder.inputs, strict=True)])
    return name


def cached_cases(args: argparse.Namespace) -> tuple[dict[str, tuple], dict[str, str]]:
    """The dev sequences' update inputs, cached once under ``args.cache`` -> (cases: name -> (inputs,
    given mask, masks of frames 1..N-1, camera size (W, H), kind), kinds: name -> "davis" / "synthetic")."""
    davis = [s for s in davis_sequences(args.root) if s not in HELD_OUT] if (args.root / "JPEGImages").is_dir() else []
    SYNTHETIC_CASES.update({name: (frames, masks) for name, frames, masks in synthetic_cases(args.synthetic)})
    kinds = {**{name: "davis" for name in davis}, **{name: "synthetic" for name in SYNTHETIC_CASES}}
    args.cache.mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        tasks = [(name, kind, args.root, args.cache, args.threads) for name, kind in kinds.items()]
        for name in pool.imap_unordered(cache_case, tasks):
            print(f"cached {name}", flush=True)
    cases = {}
    for name, kind in kinds.items():
        frames, masks = load_davis_sequence(args.root, name) if kind == "davis" else SYNTHETIC_CASES[name]
        stored = np.load(args.cache / f"{name}.npz")
        inputs = list(zip(*(stored[f"arr_{k}"] for k in range(4)), strict=True))
        cases[name] = (inputs, masks[0], masks[1:], (frames[0].shape[1], frames[0].shape[0]), kind)
    return cases, kinds


def cues(args: argparse.Namespace) -> dict[str, object]:
    """J of each cue alone (appearance > 0.5, motion > 0.5) on the cached dev DAVIS sequences."""
    cases, _kinds = cached_cases(args)
    per_sequence = {}
    for name, (inputs, _given, truth, size, kind) in cases.items():
        if kind == "davis":  # frame 0's inputs are skipped: its mask is the given one
            per_sequence[name] = {f"j_{cue}": mean_j([
                restore_probability(step[index][None, None].astype(np.float32), NETWORK_SIZE, size) > 0.5
                for step in inputs[1:]], truth) for index, cue in enumerate(("appearance", "motion"))}
    means = {f"j_{cue}": float(np.mean([row[f"j_{cue}"] for row in per_sequence.values()]))
             for cue in ("appearance", "motion")}
    return {"cache": str(args.cache), **means, "per_sequence": per_sequence}


def tune(args: argparse.Namespace) -> dict[str, object]:
    """Cache the network outputs of the dev sequences once, then score every rule of GRID on them."""
    cases, kinds = cached_cases(args)
    rows = []
    for values in itertools.product(*GRID.values()):
        rule = ObjectRule(**dict(zip(GRID, values, strict=True)))
        per_sequence = {name: mean_j(replay_rule(rule, inputs, given, size), truth)
                        for name, (inputs, given, truth, size, _kind) in cases.items()}
        row = {"rule": asdict(rule), "per_sequence_j": per_sequence,
               **{f"{kind}_j": float(np.mean([j for n, j in per_sequence.items() if kinds[n] == kind] or [np.nan]))
                  for kind in ("davis", "synthetic")}}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("rule", "davis_j", "synthetic_j")}), flush=True)
    best_synthetic = max(row["synthetic_j"] for row in rows)
    eligible = [row for row in rows if row["synthetic_j"] >= best_synthetic - SYNTHETIC_TOLERANCE]
    chosen = max(eligible, key=lambda row: (row["davis_j"], row["synthetic_j"]))
    return {"sequences": list(cases),
            "selection": f"highest dev DAVIS J among rules within {SYNTHETIC_TOLERANCE} of the best synthetic J",
            "chosen": chosen["rule"], "rows": rows}


def score_sequence(task: tuple[str, Path, int]) -> tuple[str, dict[str, object]]:
    """One DAVIS sequence with the default rule and unsupervised (a worker process)."""
    name, root, threads = task
    torch.set_num_threads(threads)
    model = load_model(DEFAULT_MODEL_PATH)[0]
    frames, masks = load_davis_sequence(root, name)
    pipeline, setup = finetuned(model, frames[0], masks[0])
    object_masks, sources, object_ms = stream_object(pipeline, frames, masks[0], ObjectMemory())
    unsupervised_masks, unsupervised_ms = stream_unsupervised(PerceptionPipeline(TorchBackend(model), NETWORK_SIZE), frames)
    return name, {
        "j_first_mask": mean_j(object_masks, masks[1:]), "j_unsupervised": mean_j(unsupervised_masks, masks[1:]),
        **setup, "first_mask_ms_per_frame": float(np.mean(object_ms)),
        "unsupervised_ms_per_frame": float(np.mean(unsupervised_ms)),
        "sources": {source: sources.count(source) for source in sorted(set(sources))},
        "scored_frames": len(object_masks)}


def score(args: argparse.Namespace) -> dict[str, object]:
    """All DAVIS sequences once with the default rule; the held-out 3 apart."""
    per_sequence: dict[str, dict[str, object]] = {}
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        tasks = [(name, args.root, args.threads) for name in davis_sequences(args.root)]
        for name, row in pool.imap_unordered(score_sequence, tasks):
            per_sequence[name] = row
            print(name, json.dumps(row), flush=True)
    per_sequence = dict(sorted(per_sequence.items()))

    def summary(names: list[str]) -> dict[str, float]:
        rows = [per_sequence[n] for n in names]
        return {"sequences": len(rows), "j_first_mask": float(np.mean([r["j_first_mask"] for r in rows])),
                "j_unsupervised": float(np.mean([r["j_unsupervised"] for r in rows])),
                "first_mask_wins": sum(r["j_first_mask"] > r["j_unsupervised"] for r in rows)}

    names = list(per_sequence)
    return {"rule": asdict(ObjectRule()),
            "all": summary(names), "held_out": summary([n for n in names if n in HELD_OUT]),
            "other_7": summary([n for n in names if n not in HELD_OUT]),
            "mean_setup_seconds": float(np.mean([r["finetune_seconds"] for r in per_sequence.values()])),
            "first_mask_ms_per_frame": float(np.mean([r["first_mask_ms_per_frame"] for r in per_sequence.values()])),
            "unsupervised_ms_per_frame": float(np.mean([r["unsupervised_ms_per_frame"] for r in per_sequence.values()])),
            "per_sequence": per_sequence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("tune", "cues", "score"))
    parser.add_argument("--root", type=Path, default=shared_data_root() / "davis2016")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/first_mask_cache"), help="tune: cached network outputs")
    parser.add_argument("--synthetic", type=int, default=8, help="tune: synthetic scenes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per worker")
    parser.add_argument("--workers", type=int, default=2, help="sequences run at once (processes)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "score" and not (args.root / "JPEGImages").is_dir():
        print(f"skipped: no DAVIS data at {args.root} (expected JPEGImages/ and Annotations/)")
        return
    load_before = os.getloadavg()[0]
    result = {"tune": tune, "cues": cues, "score": score}[args.command](args)
    suffix = "" if args.command == "score" else f"_{args.command}"
    out = args.out or Path(f"benchmarks/results/davis_first_mask{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"command": f"benchmarks/davis_first_mask.py {args.command}", "network_size": list(NETWORK_SIZE),
             "threads": args.threads, "workers": args.workers, "finetune": asdict(FinetuneSettings()), "cpu_count": os.cpu_count(),
             "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out.write_text(json.dumps({"setup": setup, **result}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
