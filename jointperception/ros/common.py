"""What both nodes share, without loading torch: image QoS and parameter descriptors."""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_CHOICES = ("sensor_data", "reliable")


def image_qos(name: str) -> QoSProfile:
    """'sensor_data' (best effort) or 'reliable'; depth 1: stale frames are dropped, never queued."""
    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability)


def qos_error(value: object) -> str | None:
    """Why ``value`` is not a QoS choice, or None."""
    return None if value in QOS_CHOICES else f"qos must be one of {QOS_CHOICES}, got {value!r}"


def describe(text: str, read_only: bool = False, floats: tuple[float, float] | None = None,
             ints: tuple[int, int] | None = None) -> ParameterDescriptor:
    """A ParameterDescriptor; ``floats`` / ``ints`` are inclusive (from, to) ranges rclpy enforces."""
    return ParameterDescriptor(
        description=text,
        read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=floats[0], to_value=floats[1])] if floats else [],
        integer_range=[IntegerRange(from_value=ints[0], to_value=ints[1], step=1)] if ints else [],
    )
