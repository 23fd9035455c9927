"""ONNX files exported on demand from a model file and cached by content, not by name.

Key: sha256 of the model file, of the bundled motion-layer network it is fused with and of
the code that defines the graph (``source_sha256``), input size ("dynamic" or WxH) and opset. A cached file is
validated before reuse (and its recorded source hash compared); a corrupt or stale one is
rebuilt. Writes are atomic, so a crash never leaves a half-written file under the key's name.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from jointperception import models as models_package
from jointperception.errors import ModelFileError
from jointperception.export.onnx import DEFAULT_OPSET, export_onnx, read_onnx_model
from jointperception.models.weights import DEFAULT_MOTION_MODEL_PATH, load_model

LOG = logging.getLogger(__name__)

GRAPH_CODE_DIR = Path(models_package.__file__).parent
DYNAMIC_EXAMPLE_SIZE = (320, 256)  # (W, H) traced for a dynamic export; sides > 32 avoid specialisation


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jointperception/onnx`` (default ``~/.cache/jointperception/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jointperception" / "onnx"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def graph_code_sha256() -> str:
    """sha256 of the sources of ``jointperception.models`` (the modules that define the graph), so
    an upgrade that changes the graph's code never reuses an export of the old one."""
    digest = hashlib.sha256()
    for source in sorted(GRAPH_CODE_DIR.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def source_sha256(model_path: Path) -> str:
    """sha256 over the sha256 of the joint model file, of the bundled motion-layer network and of
    the graph code: what a PerceptionModel export of ``model_path`` is made of."""
    parts = [file_sha256(model_path), file_sha256(DEFAULT_MOTION_MODEL_PATH), graph_code_sha256()]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def is_current(target: Path, key: str, digest: str) -> bool:
    """True when ``target`` is a valid ONNX file whose metadata ``key`` records ``digest``; a
    corrupt or stale file is logged (it is about to be rebuilt) and gives False."""
    if not target.is_file():
        return False
    try:
        recorded = read_onnx_model(target).metadata.get(key)
    except ModelFileError as exc:
        LOG.warning("cached ONNX is unusable, rebuilding it: %s", exc)
        return False
    if recorded != digest:
        LOG.warning("cached ONNX %s was made from another source (%s %s); rebuilding it", target, key, recorded)
    return recorded == digest


def cached_onnx(
    model_path: str | Path,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    cache_dir: str | Path | None = None,
) -> Path:
    """Model file (.safetensors or checkpoint) -> path of its ONNX export in the cache.

    input_size: (W, H) stride multiples for a static export, None for a dynamic one. Raises
    ModelFileError for a missing or corrupt model file.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: model file not found")
    digest = source_sha256(model_path)
    shape = "dynamic" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = directory / f"{model_path.stem}-{digest[:16]}-{shape}-opset{opset}.onnx"
    if is_current(target, "source_sha256", digest):
        LOG.info("using cached ONNX export %s", target)
        return target
    network, model_cfg, _metadata = load_model(model_path)
    result = export_onnx(
        network,
        model_cfg,
        target,
        input_size or DYNAMIC_EXAMPLE_SIZE,
        dynamic=input_size is None,
        opset=opset,
        extra_metadata={"source_model": model_path.name, "source_sha256": digest},
    )
    LOG.info("exported %s to %s in %.1f s (%s exporter)", model_path, target, result.seconds, result.exporter)
    return target
