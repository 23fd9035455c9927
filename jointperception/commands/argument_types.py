"""Argument types shared by the subcommands; argparse turns their errors into a usage message.

Settings the node shares (network size, thresholds, rates) are checked against
``jointperception.ranges``, the one table both use.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

from jointperception.ranges import range_error


def parse_size(text: str) -> tuple[int, int]:
    """"320x240" -> (320, 240) as (W, H), both positive integers."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT with positive integers, got {text!r}")
    return int(parts[0]), int(parts[1])


def network_size(text: str) -> tuple[int, int]:
    """"320x240" -> (W, H) within the node's network_width / network_height ranges."""
    width, height = parse_size(text)
    for name, value in (("network_width", width), ("network_height", height)):
        if (reason := range_error(name, value)) is not None:
            raise argparse.ArgumentTypeError(f"{reason} (in {text!r})")
    return width, height


def in_range(name: str, kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` checked against the range of setting ``name``."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number for {name}, got {text!r}") from None
        if (reason := range_error(name, value)) is not None:
            raise argparse.ArgumentTypeError(reason)
        return value
    parse.__name__ = name  # argparse names the type in its messages
    return parse
