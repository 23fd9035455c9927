"""Switches for the runtime pipeline's classical stages around the network, shared by ``predict``,
``eval`` and ``replay`` (the node has the parameters ``prealign``, ``refine_flow`` and ``refined_layers``)."""
from __future__ import annotations

import argparse


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-prealign", action="store_true",
                        help="do not take the pair's dominant translation out before the network "
                             "(classical.prealign; the node's prealign)")
    parser.add_argument("--no-refine-flow", action="store_true",
                        help="keep the network's flow without the variational refinement "
                             "(classical.flow_refinement; the node's refine_flow)")
    parser.add_argument("--no-refined-layers", action="store_true",
                        help="take the motion layers from the graph's raw flow, not from the refined flow "
                             "(runtime.pipeline; the node's refined_layers)")


def stage_settings(args: argparse.Namespace) -> dict[str, bool]:
    """The parsed switches as PerceptionPipeline keyword arguments: {"prealign", "refine", "refined_layers"}."""
    return {"prealign": not args.no_prealign, "refine": not args.no_refine_flow,
            "refined_layers": not args.no_refined_layers}
