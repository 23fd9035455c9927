"""Switches for the runtime pipeline's classical stages around the network, shared by ``predict``,
``eval`` and ``replay`` (the node has the parameters ``prealign`` and ``refine_flow``)."""
from __future__ import annotations

import argparse


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-prealign", action="store_true",
                        help="do not take the pair's dominant translation out before the network "
                             "(runtime.prealign; the node's prealign)")
    parser.add_argument("--no-refine-flow", action="store_true",
                        help="keep the network's flow without the variational refinement "
                             "(runtime.flow_refinement; the node's refine_flow)")


def stage_settings(args: argparse.Namespace) -> dict[str, bool]:
    """The parsed switches as PerceptionPipeline keyword arguments: {"prealign": ..., "refine": ...}."""
    return {"prealign": not args.no_prealign, "refine": not args.no_refine_flow}
