"""The bags of a fleet run: paths, glob patterns or list files -> distinct bags, each with the
name of its output sub-folder."""
from __future__ import annotations

import glob
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from jointperception.data.bags import is_bag
from jointperception.errors import InputError

GLOB_CHARACTERS = frozenset("*?[")


def _list_file(path: Path) -> list[Path]:
    """The bags of a text file, one path a line (relative to the file's folder); # comments."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [path.parent / line for line in lines if line]


def _expand(spec: str) -> list[Path]:
    if GLOB_CHARACTERS & set(spec):
        found = [Path(match) for match in sorted(glob.glob(spec, recursive=True)) if is_bag(match)]
        if not found:
            raise InputError(f"{spec}: the pattern matches no rosbag2 bag (a folder with metadata.yaml, .mcap or .db3)")
        return found
    path = Path(spec)
    if is_bag(path):
        return [path]
    if path.is_file():
        listed = _list_file(path)
        for bag in listed:
            if not is_bag(bag):
                raise InputError(f"{spec}: lists {bag}, which is not a rosbag2 bag (a folder with metadata.yaml, .mcap or .db3)")
        return listed
    if not path.exists():
        raise InputError(f"{spec}: no such bag, list file or pattern")
    raise InputError(f"{spec}: not a rosbag2 bag (a folder with metadata.yaml, .mcap or .db3) nor a list file of bags")


def expand_bags(specs: Sequence[str]) -> list[Path]:
    """Each spec is a bag, a glob pattern (quoted; ** recurses) of bags, or a text file listing one
    bag a line. Returns the distinct bags (resolved) in the order given; InputError when one spec
    names nothing usable or none is left."""
    bags: dict[Path, None] = {}
    for spec in specs:
        bags.update(dict.fromkeys(bag.resolve() for bag in _expand(spec)))
    if not bags:
        raise InputError("no bags given")
    return list(bags)


STORAGE_SUFFIXES = (".mcap", ".db3")  # a bag that is one storage file


def _stem(bag: Path) -> str:
    return bag.stem if bag.suffix in STORAGE_SUFFIXES else bag.name


def folder_names(bags: Iterable[Path]) -> dict[Path, str]:
    """Bag -> its output sub-folder: the bag's name, or, for names that several bags share,
    "<name>-<8 hex of the bag's path>" (the same on every run over the same bags)."""
    bags = list(bags)
    shared = Counter(_stem(bag) for bag in bags)
    return {bag: _stem(bag) if shared[_stem(bag)] == 1 else
            f"{_stem(bag)}-{hashlib.sha256(str(bag).encode()).hexdigest()[:8]}" for bag in bags}
