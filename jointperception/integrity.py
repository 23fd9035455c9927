"""Content hashes: written when a model file or checkpoint is saved, checked when it is loaded.

A file whose bytes changed after saving (a flipped bit, a truncated copy that still parses) is a
ModelFileError naming it, never a silent load. Safetensors models keep ``tensors_sha256`` of their
tensors in the header metadata, trainer checkpoints ``payload_sha256`` of the saved dict under
``HASH_KEY``; files saved before hashes existed load with a logged warning.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from jointperception.errors import ModelFileError

HASH_KEY = "content_sha256"
LOG = logging.getLogger(__name__)


def _update_tensor(digest: Any, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict in name order: each tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        _update_tensor(digest, state[name])
    return digest.hexdigest()


def _update_payload(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        digest.update(b"T")
        _update_tensor(digest, value)
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(repr(key).encode())
            _update_payload(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _update_payload(digest, item)
    else:  # numbers, strings, None, torch.Size, dtypes: repr is exact
        digest.update(f"V{value!r}".encode())


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """sha256 of a checkpoint dict (nested dicts, lists, tensors, numbers, strings), ``HASH_KEY`` left out."""
    digest = hashlib.sha256()
    _update_payload(digest, {key: value for key, value in payload.items() if key != HASH_KEY})
    return digest.hexdigest()


def check_hash(path: Path, recorded: str | None, actual: str) -> None:
    """ModelFileError naming ``path`` when its recorded hash differs from the content's;
    a warning when the file records none (saved before hashes existed)."""
    if recorded is None:
        LOG.warning("%s: no content hash recorded (an older file); loading it unchecked", path)
    elif recorded != actual:
        raise ModelFileError(f"{path}: file is corrupt: its content sha256 differs from the one recorded when "
                             "it was saved; restore or re-create the file")
