"""`jointperception eval` end to end on the synthetic validation split with the bundled (trained)
model: the table, the JSON, the flip-average option, a missing real-data folder, and the DAVIS
suite (every mask source, the streaming result with its mask memory) on generated sequences; and the
held-out scorers of the self-supervised benchmarks (``eval.held_out``) on the same sequences."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from jointperception.cli import main
from jointperception.eval.held_out import held_out_mask_sources, held_out_scores
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT
from jointperception.runtime.motion_layers import MASK_SOURCES

PAIRS = "3"


def _eval(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    code = main(["eval", "--suites", "synthetic", "--synthetic-pairs", PAIRS, "--threads", "1", "--out", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _eval(tmp_path_factory.mktemp("eval"), "plain")


def test_synthetic_suite_scores_ours_beside_dis(plain: dict) -> None:
    synthetic = plain["synthetic"]
    assert synthetic["num_pairs"] == int(PAIRS) and plain["flip_average"] is False
    assert set(synthetic["flow"]) == {"ours", "dis_medium"}
    for flow in synthetic["flow"].values():
        assert math.isfinite(flow["epe_all"]) and flow["epe_all"] >= 0.0 and flow["ms_per_pair"] > 0.0
    assert set(synthetic["mask"]) == {f"ours_{source}" for source in MASK_SOURCES} | {"classical_dis_medium"}
    # the bundled model is trained: its published mask finds the movers (validation mean J 0.95)
    assert synthetic["mask"]["ours_fused"]["j_mean"] > 0.5


def test_table_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _eval(tmp_path, "table")
    printed = capsys.readouterr().out
    assert "| synthetic val | ours flow |" in printed and "| synthetic val | dis_medium flow |" in printed
    assert "results written to" in printed


def test_flip_average_is_recorded_and_averages_the_flow(tmp_path: Path, plain: dict) -> None:
    flipped = _eval(tmp_path, "flipped", "--flip-average")
    assert flipped["flip_average"] is True
    ours, ours_flipped = plain["synthetic"]["flow"]["ours"], flipped["synthetic"]["flow"]["ours"]
    assert ours_flipped["epe_all"] != pytest.approx(ours["epe_all"], abs=1e-6)
    # DIS does not take the option: the same pairs give the same peer figures
    assert flipped["synthetic"]["flow"]["dis_medium"]["epe_all"] == pytest.approx(plain["synthetic"]["flow"]["dis_medium"]["epe_all"])


def test_missing_real_data_folder_skips_the_real_suites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "real.json"
    code = main(["eval", "--suites", "davis", "sintel", "--data-root", str(tmp_path / "absent"), "--threads", "1",
                 "--out", str(out)])
    assert code == 0
    assert "real data not found" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert "davis" not in results and "sintel_clean" not in results


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated sequences (5 frames, 320x240) moved into the DAVIS-2016 layout eval reads,
    and the first pair of the first one, with its flow, as the Sintel scene "synth_0" (both passes)."""
    root = tmp_path_factory.mktemp("real")
    generated = root / "generated"
    assert main(["generate", "--out", str(generated), "--sequences", "2", "--frames", "5", "--seed", "3"]) == 0
    for pass_name in ("clean", "final"):
        pair = root / "sintel" / f"{pass_name}_synth_0_0000"
        pair.mkdir(parents=True)
        for index, name in ((0, "frame1.png"), (1, "frame2.png")):
            shutil.copy(generated / "JPEGImages" / "240p" / "synth_00000" / f"{index:05d}.png", pair / name)
        shutil.copy(generated / "Flow" / "240p" / "synth_00000" / "00000.flo", pair / "flow.flo")
    for folder in ("JPEGImages", "Annotations"):
        (root / "davis2016" / folder).mkdir(parents=True)
        (generated / folder / "240p").rename(root / "davis2016" / folder / "480p")
    return root


def test_davis_suite_scores_every_source_the_stream_and_the_reference(tmp_path: Path, davis_root: Path) -> None:
    out = tmp_path / "davis.json"
    code = main(["eval", "--suites", "davis", "--data-root", str(davis_root), "--threads", "1", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    davis = results["davis"]
    expected = {f"ours_{source}" for source in MASK_SOURCES} | {"ours_fused_stream", "classical_dis_medium"}
    assert set(davis) == expected and results["mask_memory"] == DEFAULT_MEMORY_WEIGHT
    for result in davis.values():
        assert result["num_sequences"] == 2 and result["frames"] == 10 and result["ms_per_frame"] > 0.0
    # the trained model finds the generated movers, in pairs and as a stream with its memory
    assert davis["ours_fused"]["j_mean"] > 0.5 and davis["ours_fused_stream"]["j_mean"] > 0.5


def test_bad_mask_memory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--suites", "synthetic", "--mask-memory", "1.5", "--out", str(tmp_path / "x.json")]) != 0
    assert "mask memory weight must be in [0, 0.95], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_held_out_mask_sources_score_every_mask_and_agree_with_held_out_scores(davis_root: Path) -> None:
    sequences = ("synth_00000", "synth_00001")
    scores = held_out_scores(None, davis_root, davis=sequences, sintel="synth_0")
    by_mask = held_out_mask_sources(None, davis_root, davis=sequences, sintel="synth_0")
    assert set(by_mask["davis_j_by_mask"]) == {*MASK_SOURCES, "fused_stream"}
    for result in by_mask["davis_j_by_mask"].values():
        assert set(result["per_sequence_j"]) == set(sequences) and 0.0 <= result["j"] <= 1.0
    # the per-pair fused mask is the one held_out_scores scores, through the same pipeline
    assert by_mask["davis_j_by_mask"]["fused"]["j"] == pytest.approx(scores["davis_j"], abs=1e-9)
    assert by_mask["davis_j_by_mask"]["fused"]["j"] > 0.5  # the trained model finds the generated movers
    for pass_name in ("clean", "final"):
        epe = by_mask[f"sintel_{pass_name}_epe"]
        assert epe == pytest.approx(scores[f"sintel_{pass_name}_epe"]) and 0.0 < epe < 2.0
