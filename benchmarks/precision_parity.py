"""CPU ONNX Runtime parity of the reduced-precision graphs TensorRT builds from, against fp32.

    JOINTPERCEPTION_DATA=/work/shared/data python benchmarks/precision_parity.py \
        --out benchmarks/results/precision_parity.json

The bundled model's static export at 320x240 (padded to 320x256); its fp16 graph
(``export.onnx_fp16``) and its int8 Q/DQ graph for TensorRT (``export.onnx_int8_tensorrt``),
calibrated as ``build-engine --precision int8 --calibration`` does, on the first 17 frames of a
DAVIS 2016 sequence (16 consecutive pairs). Parity (``eval.precision_parity``) on rendered
pairs (seeds 0..3), with the operator check's verdict on each graph.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from jointperception.commands.build_engine import calibration_pairs, read_calibration_frames
from jointperception.data.paths import shared_data_root
from jointperception.export.onnx_cache import cached_onnx
from jointperception.export.onnx_fp16 import fp16_onnx
from jointperception.export.onnx_int8_tensorrt import tensorrt_int8_onnx
from jointperception.eval.precision_parity import TOLERANCES, precision_parity
from jointperception.export.tensorrt_ops import check_tensorrt_compatibility
from jointperception.models.weights import DEFAULT_MODEL_PATH

NETWORK = (320, 240)
EXPORT = (320, 256)
SEEDS = (0, 1, 2, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/precision_parity.json"))
    parser.add_argument("--sequence", default="blackswan", help="DAVIS 2016 sequence to calibrate int8 on")
    args = parser.parse_args()
    folder = shared_data_root() / "davis2016" / "JPEGImages" / "480p" / args.sequence
    with tempfile.TemporaryDirectory() as work:
        fp32 = cached_onnx(DEFAULT_MODEL_PATH, EXPORT, cache_dir=work)
        frames = read_calibration_frames(folder, None, 17)
        graphs = {"fp16": fp16_onnx(fp32),
                  "int8": tensorrt_int8_onnx(fp32, calibration_pairs(frames, NETWORK), Path(work) / "int8.onnx")}
        result = {"command": "python benchmarks/precision_parity.py", "export": list(EXPORT),
                  "int8_calibration": f"DAVIS 2016 {args.sequence}, {len(frames) - 1} consecutive pairs", "graphs": {}}
        for precision, path in graphs.items():
            reports = [precision_parity(fp32, path, precision, seed) for seed in SEEDS]
            result["graphs"][precision] = {
                "tensorrt_operator_check": check_tensorrt_compatibility(path) or "passes",
                "tolerance": dataclasses.asdict(TOLERANCES[precision]),
                "pairs": [{"seed": seed, **dataclasses.asdict(report), "failures": report.failures()}
                          for seed, report in zip(SEEDS, reports)],
            }
            worst = max(r.flow_mean for r in reports)
            print(f"{precision}: operator check {result['graphs'][precision]['tensorrt_operator_check']}; "
                  f"worst flow mean |diff| {worst:.4f} px; failures {[r.failures() for r in reports]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
