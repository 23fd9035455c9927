"""The learning-curve figures of a training run on the real suites, cheap enough to log often.

``dev_suite_scores(model)`` runs a copy of the model through the runtime pipeline as the node runs
it (torch backend, default stages, network size 320x240) and returns
    sintel_clean_epe, sintel_final_epe, flyingchairs_epe   mean EPE over the suite's pairs
    davis_dev_j                                            mean J of the fused mask per pair over
                                                           the DAVIS sequences outside the held-out
                                                           three, every DAVIS_FRAME_STEP-th frame
These are logged for the curve only: a run selects its best checkpoint on synthetic validation.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from jointperception.data.real import davis_sequences, flyingchairs_pairs, sintel_pairs
from jointperception.eval.davis_eval import per_pair, score_sequences
from jointperception.eval.flow_eval import score_flow_pairs
from jointperception.eval.held_out import HELD_OUT_DAVIS
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.pipeline import PerceptionPipeline

NETWORK_SIZE = (320, 240)
DAVIS_FRAME_STEP = 5


def dev_suite_scores(model: torch.nn.Module, root: Path) -> dict[str, float]:
    """-> the figures above for ``model`` (left untouched: a CPU copy in eval mode runs them)."""
    network = copy.deepcopy(model).to("cpu").eval()
    pipeline = PerceptionPipeline(TorchBackend(network), NETWORK_SIZE)
    ours = {"ours": lambda a, b: pipeline.infer_pair(a, b).flow}
    scores = {}
    for name in ("clean", "final"):
        scores[f"sintel_{name}_epe"] = score_flow_pairs(sintel_pairs(root / "sintel", passes=(name,)), ours)["ours"]["epe_all"]
    scores["flyingchairs_epe"] = score_flow_pairs(flyingchairs_pairs(root / "flyingchairs"), ours)["ours"]["epe_all"]
    dev = [name for name in davis_sequences(root / "davis2016") if name not in HELD_OUT_DAVIS]
    fused = per_pair(lambda a, b: pipeline.infer_pair(a, b).mask)
    davis = score_sequences(root / "davis2016", {"fused": fused}, sequences=dev, frame_step=DAVIS_FRAME_STEP)
    scores["davis_dev_j"] = davis["fused"]["j_mean"]
    return scores
