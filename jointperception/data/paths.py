"""Where the optional real evaluation data lives (``../shared/data`` beside a source checkout)."""
from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "JOINTPERCEPTION_DATA"  # overrides the default location


def repo_root() -> Path:
    """The source checkout that holds this package (parent of ``jointperception/``)."""
    return Path(__file__).resolve().parents[2]


def shared_data_root() -> Path:
    """``$JOINTPERCEPTION_DATA`` if set, else ``<repo>/../shared/data``; may not exist."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else repo_root().parent / "shared" / "data"
