"""Where the optional real evaluation data lives (``../shared/data`` beside a source checkout)."""
from __future__ import annotations

import os
from pathlib import Path

from jointperception.resources import CHECKOUT_ROOT

SHARED_DATA_ENV = "JOINTPERCEPTION_DATA"  # overrides the default location


def shared_data_root() -> Path:
    """``$JOINTPERCEPTION_DATA`` if set, else ``<repo>/../shared/data``; may not exist."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else CHECKOUT_ROOT.parent / "shared" / "data"
