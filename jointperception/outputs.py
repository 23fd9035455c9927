"""Outputs that are either complete or visibly not (docs/outputs.md).

A folder output OUT (predict's files, a bag, generate's sequences, demo's folder) is written as
OUT.partial/OUT and moved to OUT only once complete, with OUTPUT_MARKER (the command that wrote
it) written into it last. A run that fails or is interrupted removes OUT.partial; a killed run
(SIGKILL) leaves it, and the next run into the same OUT removes it first. So OUT exists only
whole. An existing OUT is replaced, on success only, when it is empty or an earlier complete
output of the same command; anything else there is refused (InputError: exit 2, one line).
A single-file output is written to a temporary sibling and renamed over the target.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jointperception.errors import InputError

PARTIAL_SUFFIX = ".partial"
OUTPUT_MARKER = "jointperception_output.json"  # in every complete output folder, written last
PARTIAL_MARKER = "partial.json"  # in OUT.partial: which command and process are writing it


def named(out: str | Path) -> Path:
    """``out`` with a last component to stage beside (``.`` and ``..`` resolved)."""
    out = Path(out)
    return out.resolve() if out.name in ("", "..") else out


def partial_path(out: Path) -> Path:
    """The staging folder of ``out``: OUT.partial beside it."""
    out = named(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def output_command(folder: Path) -> str | None:
    """The command named by ``folder``'s OUTPUT_MARKER; None without a readable marker."""
    try:
        return json.loads((folder / OUTPUT_MARKER).read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(out: str | Path, command: str) -> None:
    """InputError unless ``out`` is absent, an empty folder or a complete output of ``command``,
    and its OUT.partial is absent or staged by this package (so removing it loses nothing foreign)."""
    out = named(out)
    staging = partial_path(out)
    if staging.exists() and not (staging / PARTIAL_MARKER).is_file():
        raise InputError(f"{staging}: exists and was not written by jointperception; remove it or choose another --out")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise InputError(f"{out}: exists and is not a folder; remove it or choose another --out")
    if any(out.iterdir()) and output_command(out) != command:
        raise InputError(f"{out}: folder exists and is not an earlier `{command}` output (no {OUTPUT_MARKER} "
                         f"naming it); remove it or choose another --out")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``path`` whole or not at all: a temporary sibling renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@contextmanager
def staged_folder(out: str | Path, command: str, keep_failed: bool = False) -> Iterator[Path]:
    """The folder to write OUT's content to (OUT.partial/OUT, not yet created: a bag writer
    creates it itself); moved to OUT when the block ends normally, removed when it raises
    (``keep_failed``: left in OUT.partial, e.g. for its logs, until the next run).

    InputError before anything is written when OUT cannot be replaced (``check_replaceable``).
    """
    out = named(out)
    check_replaceable(out, command)
    staging = partial_path(out)
    if staging.exists():
        shutil.rmtree(staging)  # left by a killed or failed run of this package (checked above)
    staging.mkdir(parents=True)
    write_text_atomic(staging / PARTIAL_MARKER, json.dumps(
        {"command": command, "pid": os.getpid(), "started": time.time(), "complete": False}) + "\n")
    folder = staging / out.name
    try:
        yield folder
    except BaseException:
        if not keep_failed:
            shutil.rmtree(staging)
        raise
    folder.mkdir(exist_ok=True)
    write_text_atomic(folder / OUTPUT_MARKER, json.dumps({"command": command, "complete": True}) + "\n")
    if out.is_dir():
        shutil.rmtree(out)  # an earlier output of this command (checked above)
    os.rename(folder, out)
    shutil.rmtree(staging)
