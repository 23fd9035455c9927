"""Every TensorRT Python call the package makes exists in TensorRT 10.x and 11.x.

TensorRT cannot be installed on the development machine, so the API is a named stand-in:
``test/data/tensorrt_python_api.json``, a table built from NVIDIA's API reference and its
10.x -> 11.x migration pages (URLs inside). The uses are derived from the source, not listed by
hand: every ``trt.`` / ``tensorrt.`` attribute chain, and every attribute taken on a variable the
table maps to a TensorRT class (``builder``, ``config``, ``engine``, ``self._context``, ...).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import jointperception
from jointperception.export.tensorrt import TensorRTUnavailableError, check_version

PACKAGE = Path(jointperception.__file__).parent
TABLE = json.loads((Path(__file__).parent / "data" / "tensorrt_python_api.json").read_text())
MODULE_NAMES = ("trt", "tensorrt")


def _chain(node: ast.expr) -> list[str]:
    """``a.b.c`` -> ["a", "b", "c"]; [] when the chain does not start at a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def tensorrt_uses(source: str) -> set[str]:
    """TensorRT API names ("BuilderFlag.TF32", "IBuilderConfig.clear_flag") used in ``source``."""
    receivers = TABLE["receivers"]
    uses = set()
    for node in ast.walk(ast.parse(source)):
        chain = _chain(node) if isinstance(node, ast.Attribute) else []
        if len(chain) < 2:
            continue
        if chain[0] in MODULE_NAMES:
            uses.add(".".join(chain[1:]))
        elif chain[0] in receivers:
            uses.add(f"{receivers[chain[0]]}.{chain[1]}")
        elif chain[0] == "self" and len(chain) >= 3 and chain[1] in receivers:
            uses.add(f"{receivers[chain[1]]}.{chain[2]}")
    return uses


def package_uses() -> dict[str, set[str]]:
    """file (relative) -> TensorRT uses, for every package module that names the tensorrt module."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
        if names & set(MODULE_NAMES):
            found[str(path.relative_to(PACKAGE))] = tensorrt_uses(source)
    return found


def api_problems(uses: set[str]) -> list[str]:
    """Uses the table does not know, or that some supported TensorRT major lacks."""
    problems = []
    for name in sorted(uses):
        entry = TABLE["api"].get(name)
        if entry is None:
            problems.append(f"{name}: not in the API table; add it with its source")
            continue
        lacking = [major for major in TABLE["supported_majors"] if not entry[major]]
        if lacking:
            problems.append(f"{name}: absent in TensorRT {', '.join(m + '.x' for m in lacking)} ({entry['source']})")
    return problems


def test_every_tensorrt_call_of_the_package_exists_in_10x_and_11x() -> None:
    found = package_uses()
    assert set(found) == {"commands/build_engine.py", "export/tensorrt.py", "runtime/tensorrt_backend.py"}
    uses = set().union(*found.values())
    # the derivation sees the calls that matter: strong typing, the build, the run
    assert {"NetworkDefinitionCreationFlag.STRONGLY_TYPED", "Builder.build_serialized_network",
            "IBuilderConfig.clear_flag", "IExecutionContext.execute_async_v3", "ICudaEngine.get_tensor_dtype",
            "Runtime.deserialize_cuda_engine"} <= uses
    assert api_problems(uses) == []


def test_a_removed_or_unknown_api_fails_the_check() -> None:
    weakly_typed = """
config.set_flag(trt.BuilderFlag.FP16)
config.int8_calibrator = calibrator
class Calibrator(trt.IInt8EntropyCalibrator2): pass
self._engine.device_memory_size
network.add_plugin_v2(inputs, plugin)
"""
    text = "\n".join(api_problems(tensorrt_uses(weakly_typed)))
    for name in ("BuilderFlag.FP16", "IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2",
                 "ICudaEngine.device_memory_size"):
        assert f"{name}: absent in TensorRT 11.x" in text
    assert "INetworkDefinition.add_plugin_v2: not in the API table" in text


def test_every_table_entry_cites_a_source() -> None:
    for name, entry in TABLE["api"].items():
        assert entry["source"] in TABLE["sources"], name
        assert set(TABLE["supported_majors"]) <= set(entry), name


@pytest.mark.parametrize("version", ["10.0.1", "10.3.0", "11.4.0.12"])
def test_tensorrt_10_and_newer_is_accepted(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0.post12", "nightly"])
def test_tensorrt_older_than_10_is_refused_with_a_clear_error(version: str) -> None:
    with pytest.raises(TensorRTUnavailableError, match=rf"tensorrt {version} found; TensorRT 10.0 or newer is needed"):
        check_version(version)
