"""Before/after scores of a self-supervised fine-tune on the sequences held out from it, shared by
benchmarks/selfsup_finetune.py, selfsup_crossval.py and selfsup_interpolation.py: Sintel EPE of the
held-out scene (clean and final) and per-pair fused DAVIS J of the held-out sequences, through the
runtime pipeline at 320x240 (torch backend)."""
from __future__ import annotations

from pathlib import Path

from jointperception.data.real import sintel_pairs
from jointperception.eval.davis_eval import per_pair, score_sequences
from jointperception.eval.flow_eval import score_flow_pairs
from jointperception.runtime.pipeline import PerceptionPipeline

HELD_OUT_DAVIS = ("blackswan", "cows", "kite-surf")  # the recipes' fixed split (selfsup.holdout)
HELD_OUT_SINTEL = "market_5"


def held_out_scores(model_path: Path, root: Path, motion_model: Path | None = None,
                    davis: tuple[str, ...] = HELD_OUT_DAVIS, sintel: str = HELD_OUT_SINTEL,
                    refine: bool = True) -> dict:
    """{"sintel_clean_epe", "sintel_final_epe": px on the scene ``sintel``, "davis_j": J mean and
    "davis_per_sequence_j" on the sequences ``davis``}; ``root``: the shared data folder;
    ``motion_model``: a MotionLayerNet file fused in place of the bundled one; ``refine``: the
    pipeline's flow refinement (runtime.flow_refinement)."""
    pipeline = PerceptionPipeline.from_model_file(model_path, "torch", "cpu", (320, 240), motion_model=motion_model,
                                                  refine=refine)
    predictors = {"ours": lambda a, b: pipeline.infer_pair(a, b).flow}
    scores = {}
    for pass_name in ("clean", "final"):
        pairs = [p for p in sintel_pairs(root / "sintel", (pass_name,)) if sintel in p.name]
        scores[f"sintel_{pass_name}_epe"] = score_flow_pairs(pairs, predictors)["ours"]["epe_all"]
    result = score_sequences(root / "davis2016", {"ours": per_pair(lambda a, b: pipeline.infer_pair(a, b).mask)},
                             list(davis))["ours"]
    scores["davis_j"] = result["j_mean"]
    scores["davis_per_sequence_j"] = result["per_sequence_j"]
    return scores


def mean_sintel_epe(scores: dict) -> float:
    """Mean of a ``held_out_scores`` result's clean and final Sintel EPE (px)."""
    return (scores["sintel_clean_epe"] + scores["sintel_final_epe"]) / 2


def is_better(after: dict, before: dict) -> bool:
    """``after`` beats ``before`` on both held-out figures: lower mean Sintel EPE, higher DAVIS J."""
    return mean_sintel_epe(after) < mean_sintel_epe(before) and after["davis_j"] > before["davis_j"]
