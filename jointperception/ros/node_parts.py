"""Pieces of the perception node that are tested without spinning: the parameter table and its
checks, the latest-only frame slot, running statistics and the diagnostics status built from
them. The pair-reset rule, shared with ``replay``, lives in ``jointperception.runtime.stream``."""
from __future__ import annotations

import re
import threading
from collections import Counter, deque
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor

from jointperception.data.image_header import MAX_PIXELS
from jointperception.data.image_msg import CAUSES
from jointperception.ros.common import QOS_CHOICES, TRANSPORTS, describe, qos_error, transport_error
from jointperception.ros.object_mask import FOLLOW_COUNTERS
from jointperception.runtime.backends import BACKEND_NAMES, PRECISIONS
from jointperception.ranges import FLOAT_RANGES, INT_RANGES
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT
from jointperception.runtime.motion_layers import MASK_SOURCES
from jointperception.runtime.stream import RESET_REASONS

DROP_REASONS = ("stale", "rate_limit")
LATENCY_WINDOW = 300  # frames behind the latency percentiles
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
_TOGGLE = "publish ~/{0} and ~/{0}/compressed (only computed while someone subscribes)"
# name -> (default, descriptor); config/perception.yaml lists the same names.
PARAMETERS: dict[str, tuple[object, ParameterDescriptor]] = {
    "model": ("", describe("model file (.safetensors or trainer .pt); '' = bundled jointnet_tiny", True)),
    "backend": ("auto", describe(f"inference backend, one of {BACKEND_NAMES}; auto: TensorRT > ONNX Runtime CUDA > "
                                 "torch CUDA > ONNX Runtime CPU > torch CPU", True)),
    "device": ("cpu", describe("cpu, cuda or cuda:N", True)),
    "precision": ("fp32", describe(f"network precision, one of {PRECISIONS}: fp16 on torch CUDA / TensorRT, int8 on "
                                   "ONNX Runtime CPU / TensorRT (auto skips backends that cannot)", True)),
    "network_width": (320, describe("network input width (frames are resized)", True,
                                    ints=INT_RANGES["network_width"])),
    "network_height": (240, describe("network input height (frames are resized)", True,
                                     ints=INT_RANGES["network_height"])),
    "threads": (0, describe("CPU threads of torch and ONNX Runtime; 0 = their defaults", True,
                            ints=INT_RANGES["threads"])),
    "qos": ("sensor_data", describe(f"image QoS, one of {QOS_CHOICES}; depth 1", True)),
    "image_transport": ("raw", describe(f"input transport, one of {TRANSPORTS}: raw subscribes sensor_msgs/Image on "
                                        "image, compressed sensor_msgs/CompressedImage (jpeg, png) on image/compressed "
                                        "(after remapping image)", True)),
    "num_layers": (4, describe("K: motion layers published on ~/motion_layers (background + the K - 1 largest "
                               "moving layers; the bundled network has 4)", ints=INT_RANGES["num_layers"])),
    "mask_source": ("fused", describe(f"what ~/mask thresholds, one of {MASK_SOURCES} (runtime.motion_layers)")),
    "mask_threshold": (0.5, describe("mask = probability > threshold", floats=FLOAT_RANGES["mask_threshold"])),
    "occlusion_threshold": (0.5, describe("occlusion = probability > threshold",
                                          floats=FLOAT_RANGES["occlusion_threshold"])),
    "prealign": (True, describe("take the pair's dominant translation out before the network and add it back to "
                                "the flow (classical.prealign: camera pans beyond the training range)")),
    "refine_flow": (True, describe("refine the network's flow variationally on the network grid before it is published "
                                   "and used by the mask (classical.flow_refinement)")),
    "refined_layers": (True, describe("with refine_flow: the motion layers from the refined flow (the graph's layer "
                                      "head run again on it), not from the network's raw flow")),
    "mask_memory": (DEFAULT_MEMORY_WEIGHT, describe("weight of the last mask carried along the flow into the newest "
                                                    "(runtime.mask_memory); 0 = every frame on its own",
                                                    floats=FLOAT_RANGES["mask_memory"])),
    "max_rate_hz": (0.0, describe("process at most this many frames per second; 0 = no limit",
                                  floats=FLOAT_RANGES["max_rate_hz"])),
    "reset_gap_s": (1.0, describe("forget the previous frame after a stamp gap this long; 0 = never",
                                  floats=FLOAT_RANGES["reset_gap_s"])),
    "pipelined": (False, describe("two worker threads: the network of the newest pair runs while the pair before is "
                                  "finished and published (more frames per second, each a little later); false: one "
                                  "thread", True)),
    "max_pixels": (MAX_PIXELS, describe("largest compressed frame accepted, width x height as its header declares; "
                                        "a larger one is dropped (cause oversized) before decoding",
                                        ints=INT_RANGES["max_pixels"])),
    "diagnostics_period_s": (1.0, describe("period of /diagnostics", True,
                                           floats=FLOAT_RANGES["diagnostics_period_s"])),
    "output_jpeg_quality": (90, describe("JPEG quality of ~/flow_color/compressed and ~/overlay/compressed "
                                         "(masks and layers are PNG, lossless)",
                                         ints=INT_RANGES["output_jpeg_quality"])),
    **{f"publish_{name}": (True, describe(_TOGGLE.format(name))) for name in
       ("mask", "flow", "occlusion", "motion_layers", "flow_color", "overlay", "camera_info")},
}


def parameter_error(name: str, value: object) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` beyond its descriptor, or None."""
    if name == "backend" and value not in BACKEND_NAMES:
        return f"backend must be one of {BACKEND_NAMES}, got {value!r}"
    if name == "device" and not _DEVICE.fullmatch(str(value)):
        return f"device must be cpu, cuda or cuda:N, got {value!r}"
    if name == "qos":
        return qos_error(value)
    if name == "image_transport":
        return transport_error(value)
    if name == "precision" and value not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {value!r}"
    if name == "mask_source" and value not in MASK_SOURCES:
        return f"mask_source must be one of {MASK_SOURCES}, got {value!r}"
    if name == "model" and value and not Path(str(value)).is_file():
        return f"model file not found: {value}"
    return None


class FrameSlot:
    """Latest-only hand-over between the executor and the worker (one item, newest wins)."""

    def __init__(self) -> None:
        self._item: object | None = None
        self._closed = False
        self._ready = threading.Condition()

    def put(self, item: object) -> bool:
        """Store ``item``; True when it replaced one the worker never took (a stale drop)."""
        with self._ready:
            replaced = self._item is not None
            self._item = item
            self._ready.notify()
        return replaced

    def take(self, timeout: float | None = None) -> object | None:
        """The newest item (removing it); None once closed, or after ``timeout`` seconds."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed, timeout)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class RunningStats:
    """Thread-safe counters (received, dropped, bad, resets) and recent latencies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._inference_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def record(self, latency_ms: float, inference_ms: float) -> None:
        """One processed frame: receive -> published, and the pipeline's own time."""
        with self._lock:
            self._counts["processed"] += 1
            self._latency_ms.append(latency_ms)
            self._inference_ms.append(inference_ms)

    def snapshot(self) -> tuple[Counter[str], np.ndarray, np.ndarray]:
        with self._lock:
            return Counter(self._counts), np.array(self._latency_ms), np.array(self._inference_ms)


def _percentile(values: np.ndarray, q: float) -> str:
    return f"{np.percentile(values, q):.1f}" if values.size else "n/a"


def diagnostic_status(
    name: str,
    counts: Counter[str],
    previous: Counter[str],
    elapsed_s: float,
    latency_ms: np.ndarray,
    inference_ms: np.ndarray,
    facts: dict[str, str],
    worker_alive: bool,
) -> DiagnosticStatus:
    """Status from the counters now and ``elapsed_s`` ago: ERROR when the worker is gone, WARN
    when no frame arrived or a bad frame was skipped during that period, else OK."""
    def total(counter: Counter[str], prefix: str, keys: tuple[str, ...]) -> int:
        return sum(counter[f"{prefix}: {key}"] for key in keys)

    def rate(key: str) -> float:
        return (counts[key] - previous[key]) / elapsed_s if elapsed_s > 0 else 0.0

    new_bad = total(counts, "bad", CAUSES) - total(previous, "bad", CAUSES)
    values = {
        **facts,
        "input rate (Hz)": f"{rate('received'):.1f}",
        "rate (Hz)": f"{rate('processed'):.1f}",
        "frames received": counts["received"],
        "frames processed": counts["processed"],
        "latency p50 (ms)": _percentile(latency_ms, 50),
        "latency p99 (ms)": _percentile(latency_ms, 99),
        "inference p50 (ms)": _percentile(inference_ms, 50),
        "inference p99 (ms)": _percentile(inference_ms, 99),
        "dropped frames": total(counts, "dropped", DROP_REASONS),
        **{f"dropped: {key}": counts[f"dropped: {key}"] for key in DROP_REASONS},
        "bad frames": total(counts, "bad", CAUSES),
        **{f"bad: {key}": counts[f"bad: {key}"] for key in CAUSES},
        **{f"pair resets: {key}": counts[f"pair resets: {key}"] for key in RESET_REASONS},
        **{key: counts[key] for key in sorted(counts) if key.startswith(FOLLOW_COUNTERS)},  # once there are any
    }
    if not worker_alive:
        level, message = DiagnosticStatus.ERROR, "worker thread stopped"
    elif counts["received"] == previous["received"]:
        level, message = DiagnosticStatus.WARN, "no input frames"
    elif new_bad:
        level, message = DiagnosticStatus.WARN, f"{new_bad} bad input frames skipped"
    else:
        level, message = DiagnosticStatus.OK, "running"
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=facts.get("device", ""),
        values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
    )
