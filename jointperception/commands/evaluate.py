"""``jointperception eval``: accuracy of a model on the synthetic validation split and on the real
sets in ../shared/data, each beside OpenCV DIS-medium and the classical segmentation reference.
Prints a table and writes JSON."""
from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch

from jointperception.commands.argument_types import in_range, network_size
from jointperception.commands.stage_options import add_stage_arguments, stage_settings
from jointperception.config import DataConfig, load_config
from jointperception.data.paths import shared_data_root
from jointperception.data.real import flyingchairs_pairs, sintel_pairs
from jointperception.errors import InputError
from jointperception.eval.davis_eval import evaluate_davis
from jointperception.eval.flow_eval import flow_predictors, score_flow_pairs
from jointperception.eval.synthetic_benchmark import evaluate_synthetic_split
from jointperception.outputs import write_text_atomic
from jointperception.runtime.backends import PRECISIONS
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, MAX_MEMORY_WEIGHT, check_memory_weight
from jointperception.runtime.pipeline import PerceptionPipeline

HELP = "evaluate a model: synthetic validation + DAVIS / Sintel / FlyingChairs beside classical peers"
SUITES = ("synthetic", "davis", "sintel", "flyingchairs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--motion-model", type=Path, default=None,
                        help="MotionLayerNet file fused behind the model (default: the bundled one; torch backend only)")
    parser.add_argument("--backend", default="torch", help="runtime backend (default torch)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network precision (int8: onnxruntime on the CPU, or a calibrated TensorRT engine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--network-size", type=network_size, default=(320, 240), help="network input WxH for real data")
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES), help="what to evaluate")
    parser.add_argument("--synthetic-pairs", type=int, default=200, help="synthetic validation pairs")
    parser.add_argument("--data-config", type=Path, default=None, help="YAML whose data section defines the split")
    parser.add_argument("--data-root", type=Path, default=None, help="real data root (default ../shared/data)")
    parser.add_argument("--frame-step", type=int, default=1, help="DAVIS: score every k-th frame")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    parser.add_argument("--threads", type=in_range("threads", int), default=2, help="torch CPU threads (and ONNX Runtime intra-op threads)")
    parser.add_argument("--mask-memory", type=float, default=DEFAULT_MEMORY_WEIGHT,
                        help="DAVIS streaming result: weight of the mask carried along the flow (the node's "
                             f"mask_memory, 0..{MAX_MEMORY_WEIGHT}; 0 = none)")
    add_stage_arguments(parser)
    parser.add_argument("--flip-average", action="store_true",
                        help="average every pair with its mirror (SegFlow's \"Ours²\"; twice the inference time)")


def run(args: argparse.Namespace) -> int:
    if args.synthetic_pairs <= 0 or args.frame_step <= 0:
        raise InputError("--synthetic-pairs and --frame-step must be positive")
    check_memory_weight(args.mask_memory)
    if args.threads:  # 0: torch's default (the node's threads parameter)
        torch.set_num_threads(args.threads)
    data_cfg = load_config(args.data_config).data if args.data_config else DataConfig()
    root = args.data_root or shared_data_root()
    stages = stage_settings(args)
    results: dict = {
        "model": str(args.model or "bundled"),
        "motion_model": str(args.motion_model or "bundled"),
        "backend": args.backend,
        "precision": args.precision,
        "network_size": list(args.network_size),
        "flip_average": args.flip_average,
        "mask_memory": args.mask_memory,
        "prealign": stages["prealign"],
        "refine_flow": stages["refine"],
        "refined_layers": stages["refined_layers"],
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    if "synthetic" in args.suites:
        pipeline = PerceptionPipeline.from_model_file(args.model, args.backend, args.device, (data_cfg.width, data_cfg.height),
                                                      motion_model=args.motion_model, flip_average=args.flip_average,
                                                      precision=args.precision, threads=args.threads, **stages)
        results["synthetic"] = evaluate_synthetic_split(pipeline, data_cfg, args.synthetic_pairs)
        results["synthetic"]["size"] = [data_cfg.width, data_cfg.height]
    pipeline = PerceptionPipeline.from_model_file(args.model, args.backend, args.device, args.network_size,
                                                  motion_model=args.motion_model, flip_average=args.flip_average,
                                                  precision=args.precision, threads=args.threads, **stages)
    real_suites = [s for s in args.suites if s != "synthetic"]
    if real_suites and not root.is_dir():
        print(f"real data not found at {root}: skipping {', '.join(real_suites)}")
        real_suites = []
    if "davis" in real_suites:
        results["davis"] = evaluate_davis(pipeline, root / "davis2016", frame_step=args.frame_step,
                                          memory_weight=args.mask_memory)
    if "sintel" in real_suites:
        for name in ("clean", "final"):
            pairs = sintel_pairs(root / "sintel", passes=(name,))
            results[f"sintel_{name}"] = score_flow_pairs(pairs, flow_predictors(pipeline))
    if "flyingchairs" in real_suites:
        results["flyingchairs"] = score_flow_pairs(flyingchairs_pairs(root / "flyingchairs"), flow_predictors(pipeline))
    print(format_table(results))
    if args.out:
        write_text_atomic(args.out, json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"results written to {args.out}")
    return 0


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(results: dict) -> str:
    """Markdown table: one row per (suite, method)."""
    rows = ["| suite | method | EPE all | EPE noc | Fl-all | J mean | J recall | J decay | F mean | ms |", "|---" * 10 + "|"]
    if "synthetic" in results:
        syn = results["synthetic"]
        for method, flow in syn["flow"].items():
            rows.append(f"| synthetic val | {method} flow | {_fmt(flow['epe_all'])} | {_fmt(flow['epe_noc'])} | {_fmt(flow['fl_all'])} | | | | | {_fmt(flow['ms_per_pair'], 1)} |")
        for method, mask in syn["mask"].items():
            rows.append(f"| synthetic val | {method} mask | | | | {_fmt(mask['j_mean'])} | | | | {_fmt(mask.get('ms_per_pair'), 1)} |")
    if "davis" in results:
        for method, r in results["davis"].items():
            rows.append(f"| DAVIS-2016 ({int(r['num_sequences'])} seq) | {method} | | | | {_fmt(r['j_mean'])} | {_fmt(r['j_recall'])} | {_fmt(r['j_decay'])} | {_fmt(r['f_mean'])} | {_fmt(r['ms_per_frame'], 1)} |")
    for suite in ("sintel_clean", "sintel_final", "flyingchairs"):
        for method, r in results.get(suite, {}).items():
            rows.append(f"| {suite} | {method} | {_fmt(r['epe_all'])} | {_fmt(r['epe_noc'])} | {_fmt(r['fl_all'])} | | | | | {_fmt(r['ms_per_pair'], 1)} |")
    return "\n".join(rows)
