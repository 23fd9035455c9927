"""Before/after scores of a self-supervised fine-tune on the sequences held out from it, shared by
the benchmarks selfsup_crossval.py and selfsup_mask_sources.py: Sintel EPE of the held-out scene (clean and final) and per-pair fused DAVIS
J of the held-out sequences, through the runtime pipeline at 320x240 (torch backend); and, per
held-out sequence, the J of every mask the pipeline can publish (``held_out_mask_sources``), to see
which part of the mask a fine-tune moves."""
from __future__ import annotations

from pathlib import Path

from jointperception.data.real import sintel_pairs
from jointperception.eval.davis_eval import per_pair, score_sequences, streaming
from jointperception.eval.flow_eval import score_flow_pairs
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT
from jointperception.runtime.motion_layers import source_masks
from jointperception.runtime.pipeline import PerceptionPipeline

HELD_OUT_DAVIS = ("blackswan", "cows", "kite-surf")  # the recipes' fixed split (selfsup.holdout)
HELD_OUT_SINTEL = "market_5"
# cross-validation fold -> (held-out DAVIS sequences, held-out Sintel scene); fold 1 is the fixed split
CROSSVAL_FOLDS = {
    1: (HELD_OUT_DAVIS, HELD_OUT_SINTEL),
    2: (("bmx-trees", "car-roundabout", "dance-twirl"), "alley_1"),
    3: (("drift-straight", "goat", "motocross-jump", "parkour"), "cave_2"),
}


def held_out_scores(model_path: Path | None, root: Path, motion_model: Path | None = None,
                    davis: tuple[str, ...] = HELD_OUT_DAVIS, sintel: str = HELD_OUT_SINTEL,
                    refine: bool = True) -> dict:
    """{"sintel_clean_epe", "sintel_final_epe": px on the scene ``sintel``, "davis_j": J mean and
    "davis_per_sequence_j" on the sequences ``davis``} of the model file ``model_path`` (None: the
    bundled one); ``root``: the shared data folder; ``motion_model``: a MotionLayerNet file fused in
    place of the bundled one; ``refine``: the pipeline's flow refinement (classical.flow_refinement)."""
    pipeline = PerceptionPipeline.from_model_file(model_path, "torch", "cpu", (320, 240), motion_model=motion_model,
                                                  refine=refine)
    scores = sintel_scene_epe(pipeline, root, sintel)
    result = score_sequences(root / "davis2016", {"ours": per_pair(lambda a, b: pipeline.infer_pair(a, b).mask)},
                             list(davis))["ours"]
    scores["davis_j"] = result["j_mean"]
    scores["davis_per_sequence_j"] = result["per_sequence_j"]
    return scores


def sintel_scene_epe(pipeline: PerceptionPipeline, root: Path, sintel: str) -> dict[str, float]:
    """{"sintel_clean_epe", "sintel_final_epe"}: the pipeline's flow EPE (px) on the pairs of scene ``sintel``."""
    predictors = {"ours": lambda a, b: pipeline.infer_pair(a, b).flow}
    scores = {}
    for pass_name in ("clean", "final"):
        pairs = [p for p in sintel_pairs(root / "sintel", (pass_name,)) if sintel in p.name]
        scores[f"sintel_{pass_name}_epe"] = score_flow_pairs(pairs, predictors)["ours"]["epe_all"]
    return scores


def held_out_mask_sources(model_path: Path | None, root: Path, davis: tuple[str, ...] = HELD_OUT_DAVIS,
                          sintel: str = HELD_OUT_SINTEL, memory_weight: float = DEFAULT_MEMORY_WEIGHT) -> dict:
    """``sintel_scene_epe`` of ``sintel`` and "davis_j_by_mask": {name: {"j": J mean (as DAVIS:
    over sequences), "per_sequence_j": {sequence: J}}} on the sequences ``davis``, for name in
    ``runtime.motion_layers.MASK_SOURCES`` (per pair, as ``held_out_scores``; "fused" is its
    "davis_j") and "fused_stream" (the node's order and mask memory ``memory_weight``: the
    published mask); the same pipeline as ``held_out_scores``."""
    pipeline = PerceptionPipeline.from_model_file(model_path, "torch", "cpu", (320, 240))
    predictors = {
        "per_pair": per_pair(lambda a, b: source_masks(pipeline.infer_pair(a, b), pipeline.mask_threshold)),
        "fused_stream": streaming(pipeline, memory_weight),
    }
    results = score_sequences(root / "davis2016", predictors, list(davis))
    by_mask = {name: {"j": r["j_mean"], "per_sequence_j": r["per_sequence_j"]} for name, r in results.items()}
    return sintel_scene_epe(pipeline, root, sintel) | {"davis_j_by_mask": by_mask}


def mean_sintel_epe(scores: dict) -> float:
    """Mean of a ``held_out_scores`` result's clean and final Sintel EPE (px)."""
    return (scores["sintel_clean_epe"] + scores["sintel_final_epe"]) / 2


def is_better(after: dict, before: dict) -> bool:
    """``after`` beats ``before`` on both held-out figures: lower mean Sintel EPE, higher DAVIS J."""
    return mean_sintel_epe(after) < mean_sintel_epe(before) and after["davis_j"] > before["davis_j"]
