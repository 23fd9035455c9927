"""What the nodes share, without loading torch: image QoS, image transports, parameter descriptors and
warnings for parameters they do not declare."""
from __future__ import annotations

from collections.abc import Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from jointperception.names import did_you_mean

QOS_CHOICES = ("sensor_data", "reliable")
# image_transport's names: raw = sensor_msgs/Image on the base topic, compressed =
# sensor_msgs/CompressedImage on <base topic>/compressed
TRANSPORTS = ("raw", "compressed")


def image_qos(name: str) -> QoSProfile:
    """'sensor_data' (best effort) or 'reliable'; depth 1: stale frames are dropped, never queued."""
    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability)


def qos_error(value: object) -> str | None:
    """Why ``value`` is not a QoS choice, or None."""
    return None if value in QOS_CHOICES else f"qos must be one of {QOS_CHOICES}, got {value!r}"


def transport_topic(node: Node, base: str, transport: str) -> tuple[type, str]:
    """(message type, topic) of ``transport`` for the image topic ``base`` of ``node``.

    As image_transport does, the base name is resolved first (namespace and remaps, so
    ``image:=/camera/image_raw`` also moves the compressed topic) and ``/compressed`` appended.
    """
    if transport == "raw":
        return Image, base
    if transport == "compressed":
        return CompressedImage, f"{node.resolve_topic_name(base)}/compressed"
    raise ValueError(f"image transport must be one of {TRANSPORTS}, got {transport!r}")


def transport_error(value: object) -> str | None:
    """Why ``value`` is not an image transport, or None."""
    return None if value in TRANSPORTS else f"image_transport must be one of {TRANSPORTS}, got {value!r}"


def describe(text: str, read_only: bool = False, floats: tuple[float, float] | None = None,
             ints: tuple[int, int] | None = None) -> ParameterDescriptor:
    """A ParameterDescriptor; ``floats`` / ``ints`` are inclusive (from, to) ranges rclpy enforces."""
    return ParameterDescriptor(
        description=text,
        read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=floats[0], to_value=floats[1])] if floats else [],
        integer_range=[IntegerRange(from_value=ints[0], to_value=ints[1], step=1)] if ints else [],
    )


def unknown_parameter_warnings(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """One warning per name in ``given`` (a params file, ``-p``) that is not ``declared``, with the
    nearest declared name; ``qos_overrides.*`` belong to rclpy and are left alone."""
    declared = list(declared)
    warnings = []
    for name in sorted(given):
        if name not in declared and not name.startswith("qos_overrides."):
            hint = did_you_mean(name, declared)
            warnings.append(f"unknown parameter {name!r} ignored{f', {hint}' if hint else ''}")
    return warnings


def warn_unknown_parameters(node: Node) -> None:
    """Log ``unknown_parameter_warnings`` for the overrides ``node`` was started with, once its
    parameters are declared (rclpy keeps both only in private fields)."""
    for warning in unknown_parameter_warnings(node._parameter_overrides, node._parameters):
        node.get_logger().warning(warning)
