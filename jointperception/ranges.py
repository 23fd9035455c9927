"""The one table of numeric ranges shared by the command line and the ROS nodes.

The node declares its parameters with these inclusive (low, high) ranges (rclpy enforces them),
and the CLI's argument types check the same names, so ``predict --network-size 7x5`` fails the
way ``network_width:=7`` does. ``range_error`` says why a value is outside its range.
"""
from __future__ import annotations

# name -> inclusive (low, high); ints for integer settings, floats for real ones
INT_RANGES: dict[str, tuple[int, int]] = {
    "network_width": (32, 4096),  # px, network input (frames are resized to it)
    "network_height": (32, 4096),
    "threads": (0, 256),  # 0 = the libraries' defaults
    "num_layers": (2, 255),  # motion layers K (labels are uint8)
    "output_jpeg_quality": (1, 100),
    "jpeg_quality": (1, 100),
    "max_pixels": (1, 2**31 - 1),  # largest width x height a decoder accepts (data/image_header.py)
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "mask_threshold": (0.0, 1.0),
    "occlusion_threshold": (0.0, 1.0),
    "max_rate_hz": (0.0, 1000.0),  # 0 = no limit
    "reset_gap_s": (0.0, 3600.0),  # 0 = never
    "diagnostics_period_s": (0.05, 60.0),
    "rate_hz": (0.01, 1000.0),
    "mask_memory": (0.0, 0.95),  # runtime.mask_memory; 1 would never let the newest frame in
}


def value_range(name: str) -> tuple[float, float]:
    """The inclusive (low, high) of setting ``name`` (KeyError for a name not in the table)."""
    return INT_RANGES[name] if name in INT_RANGES else FLOAT_RANGES[name]


def range_error(name: str, value: float) -> str | None:
    """Why ``value`` is outside the range of setting ``name``, or None when it is inside."""
    low, high = value_range(name)
    if low <= value <= high:  # False for NaN
        return None
    return f"{name} must be within {low}..{high}, got {value}"
