"""``benchmarks/gpu_check.py`` stays runnable: its CPU smoke mode runs the same measurement code
(network alone, the device pipeline, parity against the CPU pipeline) on one small size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # real bundled-model inference on the CPU, tens of seconds

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run_check(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cpu_smoke_run_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = run_check("--device", "cpu", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    [record] = result["records"]
    assert record["size"] == [96, 64] and record["config"] == "fp32"
    assert record["network"]["ms_median"] > 0 and record["pipeline"]["fps"] > 0
    assert set(record["stage_ms"]) == {"upload_resize", "prealign", "network_joint", "refine_flow", "motion_layers",
                                       "residual_cue", "mask_memory"}
    assert record["network_parity_vs_cpu_fp32"]["flow_max_px"] <= 1e-4  # the same torch on the same device
    assert record["pipeline_parity_vs_cpu_pipeline"]["mask_agreement"] >= 0.9
    assert result["skipped"] == ["fp16: needs CUDA", "fp16_cuda_graphs: needs CUDA"]
    assert result["goal"]["measured"] is False
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_check("--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "PyTorch sees no CUDA GPU" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.json").exists()
