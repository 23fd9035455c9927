"""A non-editable install finds the bundled model and config: the package is pip-installed (no ``-e``)
into a temporary prefix, as colcon without ``--symlink-install`` lays it out, and ``predict`` runs from
a folder outside the checkout with only that prefix on the path (resources.shipped_file)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("setup.py", "setup.cfg", "package.xml", "resource", "jointperception", "launch", "config", "models")


def _install(prefix: Path, source: Path) -> Path:
    """Copy what setup.py packages to ``source`` (the build writes there, not into the checkout), pip-install
    it into ``prefix`` -> that prefix's site-packages. ``--ignore-installed``: pip would otherwise
    uninstall the environment's own (editable) install first, breaking every later test."""
    for name in PACKAGE_FILES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--ignore-installed", "--prefix", str(prefix), str(source)], check=True, capture_output=True, text=True)
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def test_installed_package_predicts_with_its_bundled_model_from_outside_the_checkout(tmp_path: Path) -> None:
    prefix, source, work = tmp_path / "prefix", tmp_path / "source", tmp_path / "work"
    source.mkdir()
    site = _install(prefix, source)
    share = prefix / "share" / "jointperception"
    assert {path.name for path in (share / "config").iterdir()} == {"perception.yaml", "fastdds_shm.xml"}  # no training recipes
    assert (share / "models" / "jointnet_tiny.safetensors").is_file()
    shutil.rmtree(source)  # nothing of the build left to find

    frames = work / "frames"
    frames.mkdir(parents=True)
    base = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2.0)
    for index in range(3):
        cv2.imwrite(str(frames / f"{index:03d}.png"), np.roll(base, 2 * index, axis=1))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import jointperception; print(jointperception.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site)
    result = subprocess.run([sys.executable, "-m", "jointperception", "predict", "--input", "frames", "--out", "out",
                             "--backend", "torch", "--network-size", "64x48"], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert Path(summary["model"]).resolve() == (share / "models" / "jointnet_tiny.safetensors").resolve()
    assert len(list((work / "out" / "mask").glob("*.png"))) == 3
