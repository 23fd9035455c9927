"""Content hashes that decide whether a bag's fleet outputs are current: the same input bytes,
model bytes and replay settings give the same key, whatever the paths."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from jointperception.errors import DataFormatError, ModelFileError
from jointperception.eval.replay_job import ReplayJob
from jointperception.models.weights import DEFAULT_MODEL_PATH, DEFAULT_MOTION_MODEL_PATH

BLOCK = 1 << 20


def content_sha256(path: Path) -> str:
    """sha256 over a file's bytes, or over a folder's files (relative path, size, bytes) in sorted
    order; DataFormatError when ``path`` cannot be read."""
    digest = hashlib.sha256()
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            name = file.relative_to(path).as_posix() if path.is_dir() else ""
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as handle:
                while block := handle.read(BLOCK):
                    digest.update(block)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc})") from exc
    return digest.hexdigest()


def models_sha256(job: ReplayJob) -> str:
    """sha256 of the job's model file and the bundled motion-layer model every backend loads;
    ModelFileError when the model file is missing."""
    model = job.model if job.model is not None else DEFAULT_MODEL_PATH
    if not model.is_file():
        raise ModelFileError(f"{model}: model file not found")
    both = content_sha256(model) + content_sha256(DEFAULT_MOTION_MODEL_PATH)
    return hashlib.sha256(both.encode()).hexdigest()


def job_settings(job: ReplayJob) -> dict[str, object]:
    """The job's settings as JSON values, the model path left out (the key holds its bytes' hash)."""
    fields = dataclasses.asdict(job)
    fields.pop("model")
    return json.loads(json.dumps(fields, default=str))


def outputs_key(bag_sha256: str, model_sha256: str, job: ReplayJob) -> str:
    """sha256 of (bag content, model content, settings): equal keys give equal outputs."""
    text = json.dumps({"bag": bag_sha256, "model": model_sha256, "settings": job_settings(job)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
