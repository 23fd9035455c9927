"""SegFlow Table-1-style ablation on the synthetic validation split, at an equal step budget.

Variants (all JointNet-tiny, same data, seed and steps):
  joint_iterative  bidirectional fusion, SegFlow iterative branch alternation (the bundled recipe)
  joint_onepass    bidirectional fusion, both branches trained at once ("one pass")
  no_fusion        branches exchange no features, trained at once: its mask J is the
                   segmentation-only network and its EPE the flow-only network

    python benchmarks/ablation.py --steps 1500 --out benchmarks/results/ablation.json

Runs resume from runs/ablation/<variant>/last.pt, so an interrupted ablation continues.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from jointperception.config import ExperimentConfig, load_config
from jointperception.eval.synthetic_benchmark import evaluate_synthetic_split
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.train.trainer import WEIGHTS_NAME, train

VARIANTS = {
    "joint_iterative": {"mode": "iterative", "fusion": "bidirectional"},
    "joint_onepass": {"mode": "joint", "fusion": "bidirectional"},
    "no_fusion": {"mode": "joint", "fusion": "none"},
}


def variant_config(base: ExperimentConfig, mode: str, fusion: str, steps: int) -> ExperimentConfig:
    """The base config with the variant's mode/fusion and a step budget scaled phase schedule."""
    train_cfg = dataclasses.replace(
        base.train, mode=mode, max_steps=steps, min_phase_steps=max(steps // 8, 1), eval_every=max(steps // 12, 1)
    )
    cfg = dataclasses.replace(base, train=train_cfg, model=dataclasses.replace(base.model, fusion=fusion))
    cfg.validate()
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/train_synthetic.yaml"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pairs", type=int, default=200, help="synthetic validation pairs to score")
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.json"))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    base = load_config(args.config)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.variants:
        cfg = variant_config(base, steps=args.steps, **VARIANTS[name])
        run_dir = args.runs / name
        outcome = train(cfg, run_dir, device="cpu", resume="auto", command=f"benchmarks/ablation.py {name}")
        if outcome.signal is not None:
            raise SystemExit(f"{name}: interrupted at step {outcome.step}; rerun to resume")
        torch.set_num_threads(2)
        pipeline = PerceptionPipeline.from_model_file(run_dir / WEIGHTS_NAME, network_size=(cfg.data.width, cfg.data.height))
        scores = evaluate_synthetic_split(pipeline, cfg.data, args.pairs)
        results[name] = {
            **VARIANTS[name],
            "steps": args.steps,
            "epe": scores["flow"]["ours"]["epe_all"],
            "mask_j": scores["mask"]["ours_segmentation"]["j_mean"],
            "dis_medium_epe": scores["flow"]["dis_medium"]["epe_all"],
            "pairs": scores["num_pairs"],
        }
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("| variant | training | fusion | steps | EPE (px) | mask J |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['mode']} | {r['fusion']} | {r['steps']} | {r['epe']:.3f} | {r['mask_j']:.3f} |")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
