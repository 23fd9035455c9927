"""Parity of an exported ONNX model against eager PyTorch on a real rendered frame pair.

Both sides run through their runtime backends on the same ``runtime.pipeline.preprocess``
inputs, so what is compared is exactly what is deployed. Tolerances (issue #4): flow 1e-3 px,
probabilities 1e-4, thresholded masks and argmax motion layers identical on >= 99.9 % of pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jointperception.data.synthetic import MIN_SIZE, render_sequence
from jointperception.errors import JointPerceptionError
from jointperception.export.onnx import read_onnx_model
from jointperception.models.jointnet import JointNet
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.onnxruntime_backend import (
    DEFAULT_THREADS,
    OnnxRuntimeBackend,
)
from jointperception.runtime.pipeline import preprocess

TOLERANCES = {"mask_prob": 1e-4, "flow": 1e-3, "occlusion_prob": 1e-4, "layer_prob": 1e-4}  # max |ORT - torch|
MIN_MASK_AGREEMENT = 0.999  # fraction of pixels whose thresholded mask / occlusion / argmax layer agree
THRESHOLD = 0.5


class ParityError(JointPerceptionError):
    """An exported model disagrees with PyTorch beyond the tolerances."""


@dataclass(frozen=True)
class ParityReport:
    network_size: tuple[int, int]  # (W, H) of the compared pair, before padding
    max_abs_diff: dict[str, float]  # output name -> max |ORT - torch|
    agreement: dict[str, float]  # "mask" / "occlusion" / "layers" -> fraction of equal decided pixels

    def failures(self) -> list[str]:
        """One line per output beyond tolerance; empty when the export passes."""
        lines = [
            f"{name} differs by {diff:.3g} > {TOLERANCES[name]:g}"
            for name, diff in self.max_abs_diff.items()
            if not diff <= TOLERANCES[name]  # NaN fails too
        ]
        lines += [
            f"{name} agrees on {100 * value:.3f} % of pixels < {100 * MIN_MASK_AGREEMENT:.1f} %"
            for name, value in self.agreement.items()
            if value < MIN_MASK_AGREEMENT
        ]
        return lines

    def summary(self) -> str:
        width, height = self.network_size
        diffs = ", ".join(f"{name} {diff:.2e}" for name, diff in self.max_abs_diff.items())
        agree = ", ".join(f"{name} {100 * value:.3f} %" for name, value in self.agreement.items())
        return f"parity at {width}x{height}: max |ORT - torch| {diffs}; thresholded agreement {agree}"


def parity_pair(network_size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive rendered frames (H, W, 3) uint8 RGB at ``network_size`` (W, H), or at
    the renderer's minimum side when smaller (``preprocess`` then resizes them)."""
    width, height = network_size
    frames = render_sequence(seed, 2, max(height, MIN_SIZE), max(width, MIN_SIZE)).frames
    return frames[0], frames[1]


def _decide(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1, C, h_pad, w_pad) probabilities -> (height, width) decisions, padding removed: C = 1
    thresholded at THRESHOLD, C > 1 argmax over the channels (motion layers)."""
    prob = prob[0, :, :height, :width]
    return prob[0] > THRESHOLD if prob.shape[0] == 1 else prob.argmax(axis=0)


def parity_check(
    onnx_path: str | Path,
    network: JointNet,
    network_size: tuple[int, int],
    threads: int = DEFAULT_THREADS,
    seed: int = 0,
) -> ParityReport:
    """Compare ONNX Runtime (CPU) with eager torch (CPU, float32) on a rendered pair.

    network_size: (W, H) the pair is rendered at; ``preprocess`` pads it to the stride. Torch
    pools the flow for the motion net as the export recorded (``motion_stride`` metadata).
    """
    first, second = parity_pair(network_size, seed)
    image1, image2 = preprocess(first, network_size), preprocess(second, network_size)
    recorded = read_onnx_model(onnx_path).metadata.get("motion_stride")
    expected = TorchBackend(network, motion_stride=int(recorded) if recorded else None).infer(image1, image2)
    actual = OnnxRuntimeBackend(onnx_path, "cpu", threads=threads).infer(image1, image2)
    width, height = network_size
    diffs = {name: float(np.max(np.abs(actual[name] - expected[name]))) for name in TOLERANCES}
    agreement = {
        label: float(np.mean(_decide(actual[key], height, width) == _decide(expected[key], height, width)))
        for label, key in (("mask", "mask_prob"), ("occlusion", "occlusion_prob"), ("layers", "layer_prob"))
    }
    return ParityReport(network_size=network_size, max_abs_diff=diffs, agreement=agreement)


def check_parity(report: ParityReport) -> None:
    """Raise ParityError listing every output beyond tolerance."""
    failures = report.failures()
    if failures:
        raise ParityError(f"ONNX export fails parity with torch at {report.network_size}: {'; '.join(failures)}")
