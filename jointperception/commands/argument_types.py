"""Argument types shared by the subcommands; argparse turns their errors into a usage message."""
from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """"320x240" -> (320, 240) as (W, H), both positive integers."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT with positive integers, got {text!r}")
    return int(parts[0]), int(parts[1])
