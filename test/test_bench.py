"""``jointperception bench``: a tiny real run writes JSON, markdown and PNG with sane values;
GPU variants are listed as skipped (never faked); bad options are one line and exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jointperception.cli import main
from jointperception.errors import InputError
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.runtime.backends import TorchBackend

PEER = "dis_ultrafast+classical"


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--backends", "torch,torch-cuda-fp16", "--peers", PEER, "--resolutions", "64x48",
            "--runs", "2", "--warmup", "1", "--val-pairs", "2", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_json_has_latency_and_accuracy_for_us_and_the_peer(bench_out: Path) -> None:
    text = (bench_out / "bench.json").read_text()
    assert "NaN" not in text  # strict JSON: regions without pixels are null
    results = json.loads(text)
    rows = {row["method"]: row for row in results["latency"]}
    assert set(rows) == {"torch", "torch-cuda-fp16", PEER}
    for name in ("torch", PEER):
        row = rows[name]
        assert row["status"] == "ok" and row["resolution"] == [64, 48] and row["runs"] == 2
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["fps"] > 0 and row["cpu_ms_per_frame"] > 0
    assert rows["torch"]["network"] == [64, 64]  # padded to the network stride
    assert results["settings"]["threads"] == 1 and results["settings"]["spin"] and results["validation"]["pairs"] == 2
    for name in ("torch", PEER):
        scores = results["accuracy"][name]
        assert scores["num_pairs"] == 2 and 0 <= scores["epe_all"] < 10 and 0 <= scores["j_mean"] <= 1
    assert "torch-cuda-fp16" not in results["accuracy"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the fp16 variant runs")
def test_unavailable_gpu_variant_is_listed_as_skipped_with_its_reason(bench_out: Path) -> None:
    results = json.loads((bench_out / "bench.json").read_text())
    [row] = [r for r in results["latency"] if r["method"] == "torch-cuda-fp16"]
    assert row["status"] == "skipped" and "CUDA" in row["reason"] and "p50_ms" not in row
    assert "- torch-cuda-fp16 (64x48): PyTorch sees no CUDA GPU" in (bench_out / "bench.md").read_text()


def test_markdown_and_plot_are_written(bench_out: Path) -> None:
    markdown = (bench_out / "bench.md").read_text()
    assert "| p50 ms | p90 ms | p99 ms | frames/s |" in markdown
    assert f"| {PEER} | cpu | fp32 | 64x48 |" in markdown and "| torch | cpu | fp32 | 64x48 |" in markdown
    png = (bench_out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000  # two panels with points and labels


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--backends", "torch,openvino", "--backends: unknown openvino"),
     ("--resolutions", "320by240", "--resolutions: expected WIDTHxHEIGHT"),
     ("--resolutions", "320x0", "--resolutions: expected WIDTHxHEIGHT"),
     ("--peers", "sift", "--peers: unknown sift"),
     ("--runs", "0", "--runs must be >= 1"),
     ("--no-spin", None, "--no-spin needs OMP_WAIT_POLICY=PASSIVE")],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    option: str, value: str | None, message: str,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["bench", option, *([value] if value else []), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jointperception bench: error: ") and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["fp16", "cuda_graphs"])
def test_torch_gpu_only_options_on_cpu_fail_clearly(option: str) -> None:
    network = load_model(DEFAULT_MODEL_PATH)[0]
    with pytest.raises(InputError, match=f"{option} needs a CUDA device"):
        TorchBackend(network, "cpu", **{option: True})

