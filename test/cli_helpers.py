"""Assertions on what a command printed, shared by the hostile-input tests."""
from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The captured stderr is one line, no traceback, holding every needle -> that line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err
