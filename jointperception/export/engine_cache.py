"""TensorRT engine cache: cache key, engine spec, input shapes, and engine files with JSON sidecars.

An engine only runs on the TensorRT version and GPU that built it, so every engine file has a
sidecar ``<engine>.json`` recording the key fields (ONNX sha256, TensorRT version, GPU name,
compute capability, precision, input shape (1, 3, H, W)) and the engine's own sha256. The
cache names files by the key and still validates the sidecar before reuse, never trusting a
file name alone. Nothing here imports TensorRT; the builder lives in ``export.tensorrt``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jointperception.errors import InputError
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import file_sha256
from jointperception.models.normalize import NETWORK_STRIDE

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
SPEC_FIELDS = ("onnx_sha256", "trt_version", "gpu_name", "compute_capability", "precision", "input_shape")
RUNTIME_FIELDS = ("trt_version", "gpu_name", "compute_capability")  # what decides if a plan deserialises


def default_engine_dir() -> Path:
    """``$XDG_CACHE_HOME/jointperception/tensorrt`` (default ``~/.cache/jointperception/tensorrt``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jointperception" / "tensorrt"


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    precision: str,
    input_shape: tuple[int, ...],
) -> str:
    """32 hex digits of sha256 over the canonical JSON of the six fields; tuples and lists agree."""
    fields = {
        "onnx_sha256": onnx_sha256, "trt_version": trt_version, "gpu_name": gpu_name,
        "compute_capability": [int(v) for v in compute_capability], "precision": precision,
        "input_shape": [int(v) for v in input_shape],
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class EngineSpec:
    """What an engine was built from and for; ``input_shape`` is (1, 3, H, W)."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    input_shape: tuple[int, int, int, int]

    def key(self) -> str:
        return engine_cache_key(**{name: getattr(self, name) for name in SPEC_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists) plus the key."""
        fields = {name: list(v) if isinstance(v, tuple) else v for name, v in dataclasses.asdict(self).items()}
        return {**fields, "key": self.key()}

    def describe(self) -> str:
        height, width = self.input_shape[2:]
        major, minor = self.compute_capability
        return f"{self.precision} {width}x{height} on {self.gpu_name} (sm {major}.{minor}, TensorRT {self.trt_version})"


def resolve_input_shape(onnx_path: str | Path, input_size: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """(1, 3, H, W) to build for: a static ONNX's own size (``input_size`` (W, H) must agree when
    given); a dynamic ONNX needs ``input_size``, sides multiples of NETWORK_STRIDE. InputError else."""
    info = read_onnx_model(onnx_path)
    if info.input_size is not None:
        if input_size is not None and tuple(input_size) != info.input_size:
            raise InputError(f"{onnx_path}: exported for input {info.input_size} (W, H), not {tuple(input_size)}")
        input_size = info.input_size
    elif input_size is None:
        raise InputError(f"{onnx_path}: dynamic-shape ONNX; give the input size (W, H) to build an engine for")
    width, height = input_size
    if width <= 0 or height <= 0 or width % NETWORK_STRIDE or height % NETWORK_STRIDE:
        raise InputError(f"input size {width}x{height} must be positive multiples of {NETWORK_STRIDE}")
    return 1, 3, int(height), int(width)


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(f"{engine_path.name}.json")


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_engine(path: str | Path, plan: bytes, spec: EngineSpec, details: dict[str, Any]) -> Path:
    """Write the serialized engine, then its sidecar (spec, engine sha256, ``details``), both atomically."""
    path = Path(path)
    atomic_write(path, plan)
    record = {**spec.to_dict(), "engine_sha256": hashlib.sha256(plan).hexdigest(), **details}
    atomic_write(sidecar_path(path), json.dumps(record, indent=2).encode())
    return path


def engine_problem(engine_path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why ``engine_path`` does not fit ``expected`` (field -> JSON value, e.g. from
    ``EngineSpec.to_dict``): missing or corrupt sidecar, a recorded field that differs, or an
    engine file whose sha256 differs from its sidecar's. None when it fits."""
    engine_path, sidecar = Path(engine_path), sidecar_path(engine_path)
    if not sidecar.is_file():
        return f"no sidecar {sidecar.name} records what built it"
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"sidecar {sidecar.name} is corrupt ({type(exc).__name__}: {exc})"
    if not isinstance(record, dict):
        return f"sidecar {sidecar.name} is corrupt (not a JSON object)"
    for name, value in expected.items():
        if record.get(name) != value:
            return f"built with {name} {record.get(name)!r}, this runtime needs {value!r}"
    if not engine_path.is_file():
        return "engine file is missing"
    if file_sha256(engine_path) != record.get("engine_sha256"):
        return "engine file is corrupt (its sha256 differs from the sidecar's)"
    return None


def copy_engine(source: str | Path, target: str | Path) -> Path:
    """Copy an engine and its sidecar (both atomically, sidecar last); returns ``target``."""
    source, target = Path(source), Path(target)
    atomic_write(target, source.read_bytes())
    atomic_write(sidecar_path(target), sidecar_path(source).read_bytes())
    return target


class EngineCache:
    """Engines under ``root`` named by EngineSpec.key(), each validated through its sidecar."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def engine_path(self, spec: EngineSpec) -> Path:
        height, width = spec.input_shape[2:]
        return self.root / f"engine-{spec.precision}-{width}x{height}-{spec.key()}.engine"

    def timing_cache_path(self, spec: EngineSpec) -> Path:
        """Timing caches are per TensorRT version and GPU, shared by every model and precision."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", spec.gpu_name).strip("-")
        major, minor = spec.compute_capability
        return self.root / f"timing-trt{spec.trt_version}-{gpu}-sm{major}{minor}.cache"

    def int8_onnx_path(self, spec: EngineSpec) -> Path:
        """The calibrated int8 Q/DQ ONNX of this ONNX at this input shape (``build-engine`` writes it)."""
        height, width = spec.input_shape[2:]
        return self.root / f"int8-qdq-{spec.onnx_sha256[:16]}-{width}x{height}.onnx"

    def lookup(self, spec: EngineSpec) -> Path | None:
        """The cached engine for ``spec``, or None (logging why) when absent, corrupt or built
        for something else; the caller then builds it at ``engine_path(spec)``."""
        path = self.engine_path(spec)
        if not path.exists() and not sidecar_path(path).exists():
            LOG.info("no cached TensorRT engine for %s", spec.describe())
            return None
        problem = engine_problem(path, {name: value for name, value in spec.to_dict().items() if name != "key"})
        if problem is not None:
            LOG.warning("cached TensorRT engine %s is unusable (%s); rebuilding it", path, problem)
            return None
        LOG.info("using cached TensorRT engine %s", path)
        return path
