"""The package's import graph, derived from the source: no two top-level parts of jointperception
import each other, and none imports a part of a higher layer (the order of docs/design.md, layers).

Every ``import`` and ``from ... import`` counts, at module level or inside a function, absolute or
relative; a part is a top-level subpackage (``runtime``) or module (``config``)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import jointperception

PACKAGE_DIR = Path(jointperception.__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name
# lowest first; a part may import its own layer's modules only within itself
LAYERS = (
    ("errors", "names"),
    ("config", "viz", "resources", "integrity", "ranges", "outputs"),
    ("classical",),
    ("data",),
    ("models",),
    ("losses",),
    ("export",),
    ("runtime",),
    ("eval",),
    ("train",),
    ("fleet",),
    ("ros",),
    ("commands",),
    ("cli",),
    ("__main__",),
)
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> list[str]:
    """jointperception/runtime/pipeline.py -> ['jointperception', 'runtime', 'pipeline']."""
    parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_modules(source: str, package: list[str]) -> set[str]:
    """Absolute names of every module ``source`` (a module of ``package``) imports, relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _part(module: str) -> str | None:
    """'jointperception.runtime.pipeline' -> 'runtime'; None outside the package or for the package itself."""
    pieces = module.split(".")
    return pieces[1] if pieces[0] == PACKAGE and len(pieces) > 1 else None


def import_graph() -> dict[tuple[str, str], set[str]]:
    """(importing part, imported part) -> the importing files, for parts that differ."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        own = _module_name(path)
        source = _part(".".join(own))
        package = own if path.name == "__init__.py" else own[:-1]
        for module in _imported_modules(path.read_text(), package):
            target = _part(module)
            if source and target in LAYER_OF and target != source:
                edges[(source, target)].add(str(path.relative_to(PACKAGE_DIR)))
    return edges


def test_every_part_has_a_layer() -> None:
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE_DIR.iterdir()
             if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()}
    assert parts == set(LAYER_OF)


def test_imports_count_at_every_depth_and_relative_ones_resolve() -> None:
    source = "def run():\n    from ..runtime import pipeline\n    import jointperception.eval.metrics\n"
    modules = _imported_modules(source, [PACKAGE, "commands"])
    assert {_part(module) for module in modules} == {"runtime", "eval"}
    edges = import_graph()
    assert "runtime/pipeline.py" in edges[("runtime", "classical")] and ("ros", "runtime") in edges


def test_no_two_parts_import_each_other() -> None:
    edges = import_graph()
    both_ways = sorted(f"{a} <-> {b}: {sorted(edges[(a, b)])} / {sorted(edges[(b, a)])}"
                       for a, b in edges if (b, a) in edges and a < b)
    assert not both_ways


def test_no_part_imports_a_higher_layer() -> None:
    upward = sorted(f"{source} -> {target}: {sorted(files)}" for (source, target), files in import_graph().items()
                    if LAYER_OF[target] > LAYER_OF[source])
    assert not upward
