"""The nearest valid name for a misspelt key (config keys, node parameters), for error messages."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``"did you mean NAME?"`` for the valid name closest to ``name`` (difflib ratio >= 0.6), else ``""``."""
    matches = difflib.get_close_matches(name, list(valid), n=1)
    return f"did you mean {matches[0]}?" if matches else ""
