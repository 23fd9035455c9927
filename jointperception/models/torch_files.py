"""Reading ``torch.save`` files (trainer checkpoints): ``weights_only=True`` only, so a file of
pickled Python objects is refused, never executed; every failure is one ModelFileError naming the
file; a dict's content hash (``integrity.HASH_KEY``) is checked and removed."""
from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from jointperception.errors import ModelFileError
from jointperception.integrity import HASH_KEY, check_hash, payload_sha256


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` -> its content (a dict without ``HASH_KEY``)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"{path}: refused: not a checkpoint of plain tensors and containers (pickled Python "
                             "objects or not a torch file); use a file written by jointperception train") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: not a readable checkpoint ({reason})") from None
    if isinstance(content, dict):
        check_hash(path, content.pop(HASH_KEY, None), payload_sha256(content))
    return content
