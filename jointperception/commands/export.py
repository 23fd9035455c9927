"""``jointperception export``: single-file ONNX of the fused model, checked against PyTorch.

The file is written next to ``--out`` first and moved into place only when ONNX Runtime matches
eager torch on a rendered frame pair (a dynamic export is checked at two sizes); on a parity
failure nothing is left at ``--out`` and the command exits with code 2.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from jointperception.commands.argument_types import parse_size
from jointperception.errors import InputError
from jointperception.eval.parity import check_parity, parity_check
from jointperception.export.onnx import DEFAULT_OPSET, MIN_OPSET, export_onnx
from jointperception.export.onnx_cache import source_sha256
from jointperception.models.normalize import NETWORK_STRIDE
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.runtime.onnxruntime_backend import DEFAULT_THREADS
from jointperception.runtime.pipeline import padded_size

HELP = "export the model to a single-file ONNX (static or dynamic shape) and check parity with torch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--out", required=True, type=Path, help="output .onnx file")
    parser.add_argument(
        "--size", type=parse_size, default=(320, 240), metavar="WxH",
        help="network size; the ONNX input is padded to multiples of 32 (default 320x240)",
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic H, W (multiples of 32), not a fixed size")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= {MIN_OPSET} (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="ONNX Runtime threads for the parity run")


def run(args: argparse.Namespace) -> int:
    if args.opset < MIN_OPSET:
        raise InputError(f"--opset must be >= {MIN_OPSET}, got {args.opset}")
    if args.out.suffix != ".onnx":
        raise InputError(f"--out must end in .onnx, got {args.out}")
    model_path = args.model if args.model is not None else DEFAULT_MODEL_PATH
    network, model_cfg, _metadata = load_model(model_path)
    input_size = padded_size(args.size)
    tmp = args.out.with_name(f".{args.out.stem}.unchecked.onnx")
    result = export_onnx(
        network, model_cfg, tmp, input_size, dynamic=args.dynamic, opset=args.opset,
        extra_metadata={"source_model": model_path.name, "source_sha256": source_sha256(model_path),
                        "network_size": f"{args.size[0]}x{args.size[1]}"},
    )
    shape = "dynamic H, W" if args.dynamic else f"static {input_size[0]}x{input_size[1]}"
    print(f"exported {model_path} ({shape}, opset {args.opset}) with the {result.exporter} exporter"
          f" in {result.seconds:.1f} s")
    sizes = [args.size]
    if args.dynamic:  # a second size exercises the symbolic shapes
        sizes.append((args.size[0] + 2 * NETWORK_STRIDE, args.size[1] + NETWORK_STRIDE))
    try:
        for size in sizes:
            report = parity_check(tmp, network, size, threads=args.threads)
            print(report.summary())
            check_parity(report)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0
