"""``jointperception bench``: latency / throughput per backend x resolution x precision beside the
OpenCV peers, accuracy on the synthetic validation split; writes JSON, markdown and a PNG plot."""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

import cv2
import torch

from jointperception.config import DataConfig
from jointperception.errors import InputError
from jointperception.eval.bench import PEERS, RESOLUTIONS, VARIANT_NAMES, VARIANTS, BenchSettings, run_bench
from jointperception.eval.bench_report import format_markdown, write_outputs
from jointperception.models.weights import DEFAULT_MODEL_PATH

HELP = "benchmark latency and accuracy of every backend beside OpenCV DIS / Farneback + classical segmentation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench"), help="output folder")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--backends", default=",".join(VARIANT_NAMES),
                        help=f"comma-separated, of {', '.join(VARIANT_NAMES)} (unavailable ones are listed as skipped)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)}; 'none' for none")
    parser.add_argument("--resolutions", default=",".join(f"{w}x{h}" for w, h in RESOLUTIONS),
                        help="comma-separated WxH camera = network sizes; the first is plotted")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each row")
    parser.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenCV CPU threads")
    parser.add_argument("--val-pairs", type=int, default=50, help="synthetic validation pairs for accuracy")
    parser.add_argument("--no-spin", action="store_true",
                        help="idle threads sleep instead of busy-waiting (for a loaded machine): ONNX Runtime "
                             "allow_spinning=0; torch needs OMP_WAIT_POLICY=PASSIVE set in the environment")
    parser.add_argument("--cache-dir", type=Path, default=None, help="ONNX / engine cache (default: user cache)")


def _names(text: str, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def parse_resolutions(text: str) -> tuple[tuple[int, int], ...]:
    """'320x240,640x480' -> ((320, 240), (640, 480)); InputError for anything else."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and 8 <= int(p) <= 8192 for p in parts):
            raise InputError(f"--resolutions: expected WIDTHxHEIGHT with sides 8..8192 like 320x240, got {item!r}")
        sizes.append((int(parts[0]), int(parts[1])))
    return tuple(sizes)


def run(args: argparse.Namespace) -> int:
    for option in ("runs", "threads", "val_pairs"):
        if getattr(args, option) < 1:
            raise InputError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    variants = _names(args.backends, VARIANT_NAMES, "--backends")
    omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "")
    if args.no_spin and omp_wait_policy.upper() != "PASSIVE":
        raise InputError("--no-spin needs OMP_WAIT_POLICY=PASSIVE in the environment (OpenMP reads it at start-up)")
    settings = BenchSettings(
        model_path=args.model or DEFAULT_MODEL_PATH,
        variants=tuple(v for v in VARIANTS if v.name in variants),
        peers=_names(args.peers, tuple(PEERS), "--peers"),
        resolutions=parse_resolutions(args.resolutions),
        runs=args.runs, warmup=args.warmup, threads=args.threads, val_pairs=args.val_pairs, cache_dir=args.cache_dir,
        spin=not args.no_spin,
    )
    if not settings.variants and not settings.peers:
        raise InputError("--backends and --peers select nothing to measure")
    results = run_bench(settings, DataConfig())
    results["machine"] = (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
                          f"load average {os.getloadavg()[0]:.1f} at the end").replace("  ", " ")
    results["versions"] = {"torch": torch.__version__, "opencv": cv2.__version__}
    if importlib.util.find_spec("onnxruntime") is not None:
        results["versions"]["onnxruntime"] = importlib.metadata.version("onnxruntime")
    results["settings"] = {"model": str(settings.model_path), "backends": list(variants), "peers": list(settings.peers),
                           "resolutions": [list(size) for size in settings.resolutions], "runs": settings.runs,
                           "warmup": settings.warmup, "threads": settings.threads, "val_pairs": settings.val_pairs,
                           "spin": settings.spin, "omp_wait_policy": omp_wait_policy or "default"}
    paths = write_outputs(results, args.out)
    print(format_markdown(results))
    print(f"written: {', '.join(str(p) for p in paths)}")
    return 0
