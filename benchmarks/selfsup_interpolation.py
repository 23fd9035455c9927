"""Weight-space interpolation between the bundled supervised model and a self-supervised fine-tune
(WiSE-FT, Wortsman et al. 2022): theta = (1 - alpha) theta_bundled + alpha theta_finetuned, scored
on the held-out sets of benchmarks/selfsup_finetune.py (eval.held_out) (alpha 0 is "before", 1 the fine-tune).

    python benchmarks/selfsup_interpolation.py --finetuned runs/recipes/selfsup_refined_teacher_no_tc/selfsup.safetensors \
        --alphas 0.5 --models runs/interpolation --out benchmarks/selfsup_interpolation.json

Integer buffers (BatchNorm batch counters) are taken from the bundled model.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from jointperception.data.paths import shared_data_root
from jointperception.eval.held_out import held_out_scores, is_better
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model, save_weights


def interpolate(start: Path, finetuned: Path, alpha: float, out: Path) -> Path:
    """Write (1 - alpha) * start + alpha * finetuned (floating-point tensors) to ``out``; both files
    must hold the same architecture."""
    model, model_cfg, _ = load_model(start)
    other, other_cfg, _ = load_model(finetuned)
    if other_cfg != model_cfg:
        raise SystemExit(f"{finetuned}: model config {other_cfg} differs from {start}'s {model_cfg}")
    theirs = other.state_dict()
    mixed = {name: torch.lerp(value, theirs[name], alpha) if value.is_floating_point() else value
             for name, value in model.state_dict().items()}
    model.load_state_dict(mixed)
    return save_weights(out, model, model_cfg, {"interpolated_from": str(start), "interpolated_to": str(finetuned),
                                                "alpha": alpha})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetuned", type=Path, required=True, help="self-supervised model file (alpha 1)")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.5])
    parser.add_argument("--models", type=Path, default=Path("runs/interpolation"), help="folder for the mixed models")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/selfsup_interpolation.json"))
    args = parser.parse_args()
    if not all(0.0 <= alpha <= 1.0 for alpha in args.alphas):
        raise SystemExit(f"--alphas must lie in [0, 1], got {args.alphas}")
    torch.set_num_threads(1)
    root = shared_data_root()
    results = {"machine": f"{platform.machine()} 1 thread", "finetuned": str(args.finetuned),
               "before": held_out_scores(DEFAULT_MODEL_PATH, root), "rows": {}}
    args.models.mkdir(parents=True, exist_ok=True)
    for alpha in args.alphas:
        path = interpolate(DEFAULT_MODEL_PATH, args.finetuned, alpha, args.models / f"{args.finetuned.parent.name}_a{alpha:g}.safetensors")
        scores = held_out_scores(path, root)
        results["rows"][f"{alpha:g}"] = {**scores, "model": str(path), "better_than_before": is_better(scores, results["before"])}
        print(f"alpha {alpha:g}: Sintel {scores['sintel_clean_epe']:.3f} / {scores['sintel_final_epe']:.3f}, "
              f"DAVIS J {scores['davis_j']:.3f} (before {results['before']['sintel_clean_epe']:.3f} / "
              f"{results['before']['sintel_final_epe']:.3f}, {results['before']['davis_j']:.3f})", flush=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
