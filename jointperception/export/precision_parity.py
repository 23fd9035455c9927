"""Parity of a reduced-precision ONNX graph (fp16 or int8 Q/DQ) against its fp32 source, both
run by ONNX Runtime on the CPU (which runs float16 and Q/DQ graphs) on one rendered frame pair.

Stated tolerances, per precision (``TOLERANCES``): flow max and mean |diff| in pixels,
probabilities mean and max |diff|, and the fraction of pixels whose thresholded mask / occlusion and
argmax motion layer agree. fp16 keeps the precision-sensitive ops in float32
(``export.onnx_fp16``), so it is held close; int8 quantises every convolution, so it is held to
what the ONNX Runtime int8 path already measured on real data (a few hundredths of a pixel of
flow EPE).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jointperception.export.parity import parity_pair
from jointperception.models.perception import INPUT_NAMES
from jointperception.runtime.onnxruntime_backend import open_session
from jointperception.runtime.pipeline import preprocess


@dataclass(frozen=True)
class Tolerance:
    flow_max: float  # px, max |flow diff|
    flow_mean: float  # px, mean |flow diff|
    prob_mean: float  # mean |diff| of mask, occlusion and layer probabilities, each
    prob_max: float | None  # max |diff| of each probability; None: unbounded (a flipped pixel may differ by 1)
    agreement: float  # min fraction of pixels with the same thresholded / argmax decision


TOLERANCES = {
    "fp16": Tolerance(flow_max=0.1, flow_mean=0.01, prob_mean=0.002, prob_max=0.1, agreement=0.995),
    "int8": Tolerance(flow_max=2.0, flow_mean=0.2, prob_mean=0.03, prob_max=None, agreement=0.94),
}
PROBABILITIES = ("mask_prob", "occlusion_prob", "layer_prob")


@dataclass(frozen=True)
class PrecisionParity:
    precision: str
    flow_max: float
    flow_mean: float
    prob_mean: dict[str, float]
    prob_max: dict[str, float]
    agreement: dict[str, float]  # "mask_prob" / "occlusion_prob" / "layer_prob" -> fraction

    def failures(self) -> list[str]:
        """One line per figure beyond ``TOLERANCES[precision]``; empty when it passes (NaN fails)."""
        tol = TOLERANCES[self.precision]
        lines = []
        if not self.flow_max <= tol.flow_max:
            lines.append(f"flow max |diff| {self.flow_max:.3g} px > {tol.flow_max:g}")
        if not self.flow_mean <= tol.flow_mean:
            lines.append(f"flow mean |diff| {self.flow_mean:.3g} px > {tol.flow_mean:g}")
        lines += [f"{name} mean |diff| {value:.3g} > {tol.prob_mean:g}"
                  for name, value in self.prob_mean.items() if not value <= tol.prob_mean]
        if tol.prob_max is not None:
            lines += [f"{name} max |diff| {value:.3g} > {tol.prob_max:g}"
                      for name, value in self.prob_max.items() if not value <= tol.prob_max]
        lines += [f"{name} decisions agree on {100 * value:.2f} % < {100 * tol.agreement:g} %"
                  for name, value in self.agreement.items() if not value >= tol.agreement]
        return lines


def _decisions(name: str, prob: np.ndarray) -> np.ndarray:
    return prob.argmax(axis=1) if name == "layer_prob" else prob > 0.5


def precision_parity(fp32_path: Path, reduced_path: Path, precision: str, seed: int = 0) -> PrecisionParity:
    """Run both graphs (static shape) on CPU ONNX Runtime on rendered pair ``seed``; compare."""
    sessions = [open_session(Path(path), "cpu", threads=1) for path in (fp32_path, reduced_path)]
    shape = sessions[0].get_inputs()[0].shape
    size = (int(shape[3]), int(shape[2]))
    feed = {name: preprocess(frame, size) for name, frame in zip(INPUT_NAMES, parity_pair(size, seed))}
    names = [output.name for output in sessions[0].get_outputs()]
    reference, reduced = ({n: np.asarray(v, np.float32) for n, v in zip(names, s.run(names, feed))} for s in sessions)
    flow = np.abs(reduced["flow"] - reference["flow"])
    return PrecisionParity(
        precision=precision, flow_max=float(flow.max()), flow_mean=float(flow.mean()),
        prob_mean={n: float(np.abs(reduced[n] - reference[n]).mean()) for n in PROBABILITIES},
        prob_max={n: float(np.abs(reduced[n] - reference[n]).max()) for n in PROBABILITIES},
        agreement={n: float(np.mean(_decisions(n, reduced[n]) == _decisions(n, reference[n]))) for n in PROBABILITIES},
    )
