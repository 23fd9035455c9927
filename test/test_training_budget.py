"""Long training runs: a time budget that ends resumable (``train --minutes``), and the real-suite
learning-curve lines of metrics.jsonl (``train.real_eval_every``) on a miniature data root laid out
as the shared data (Sintel, FlyingChairs and DAVIS folders) rendered from synthetic scenes."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_trainer import SMOKE, smoke_config

from jointperception import cli
from jointperception.commands.train import apply_overrides
from jointperception.data.formats import write_flo, write_image, write_mask
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError
from jointperception.eval.held_out import HELD_OUT_DAVIS
from jointperception.train import trainer
from jointperception.train.checkpoint import load_checkpoint


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_time_limit_ends_resumable_and_resume_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A spent budget stops after the step it ends in, with last.pt; the run then resumes to the
    end. Without real data the curve is skipped with a warning, and training goes on."""
    monkeypatch.setenv("JOINTPERCEPTION_DATA", str(tmp_path / "absent"))
    cfg = smoke_config(max_steps=4)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, real_eval_every=2))
    stopped = trainer.train(cfg, tmp_path / "run", device="cpu", time_limit_s=1e-6)
    assert stopped.time_up and stopped.signal is None and stopped.exit_code == 0 and stopped.weights is None
    assert stopped.step == 1 and load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1
    finished = trainer.train(cfg, tmp_path / "run", device="cpu", resume="auto", time_limit_s=3600.0)
    assert finished.step == 4 and not finished.time_up and finished.weights is not None
    assert not [record for record in read_metrics(tmp_path / "run") if record["kind"] == "real"]
    assert "no real data" in caplog.text


def _mini_data_root(root: Path) -> Path:
    """One Sintel pair per pass, one FlyingChairs pair, and two DAVIS sequences (one of them a
    held-out name, which the curve must leave out), each rendered at 96x64."""
    sequence = render_sequence(3, 4, 64, 96)
    for name in ("clean", "final"):
        folder = root / "sintel" / f"{name}_scene_0001"
        folder.mkdir(parents=True)
        write_image(folder / "frame1.png", sequence.frames[0])
        write_image(folder / "frame2.png", sequence.frames[1])
        write_flo(folder / "flow.flo", sequence.flow_forward[0])
    (root / "flyingchairs").mkdir()
    write_image(root / "flyingchairs" / "00001-img0.ppm", sequence.frames[1])
    write_image(root / "flyingchairs" / "00001-img1.ppm", sequence.frames[2])
    write_flo(root / "flyingchairs" / "00001-gt.flo", sequence.flow_forward[1])
    for name in ("dev-scene", HELD_OUT_DAVIS[0]):
        frames = root / "davis2016" / "JPEGImages" / "480p" / name
        masks = root / "davis2016" / "Annotations" / "480p" / name
        frames.mkdir(parents=True)
        masks.mkdir(parents=True)
        for index, (frame, mask) in enumerate(zip(sequence.frames, sequence.masks)):
            write_image(frames / f"{index:05d}.png", frame)
            write_mask(masks / f"{index:05d}.png", mask)
    return root


def test_real_suite_curve_is_logged_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOINTPERCEPTION_DATA", str(_mini_data_root(tmp_path / "data")))
    cfg = smoke_config(max_steps=2, eval_every=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, real_eval_every=2))
    trainer.train(cfg, tmp_path / "run", device="cpu")
    real = [record for record in read_metrics(tmp_path / "run") if record["kind"] == "real"]
    assert [record["step"] for record in real] == [0, 2]  # the start, then every real_eval_every steps
    keys = ("sintel_clean_epe", "sintel_final_epe", "flyingchairs_epe", "davis_dev_j", "hours")
    assert all(math.isfinite(record[key]) for record in real for key in keys)
    assert real[0]["hours"] <= real[1]["hours"]


def test_workers_override_and_a_bad_budget_is_refused() -> None:
    cfg = smoke_config()
    more = apply_overrides(cfg, workers=3)
    assert more.data.num_workers == 3 and more.train == cfg.train and cfg.data.num_workers != 3
    with pytest.raises(ConfigError, match="num_workers"):
        apply_overrides(cfg, workers=-1)
    assert cli.main(["train", "--config", str(SMOKE), "--minutes", "0"]) == 2


def test_gpu_training_script_trains_for_its_minutes_and_returns_the_run(tmp_path: Path) -> None:
    """tools/gpu_train.sh, run here on the CPU (DEVICE=cpu): the budget ends the run resumable and
    the run folder comes back under $OUT."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    env = os.environ | {"OUT": str(out), "DEVICE": "cpu", "PYTHON": sys.executable}
    run_dir = tmp_path / "run"
    done = subprocess.run(["bash", "tools/gpu_train.sh", "0.001", str(run_dir), str(SMOKE), "0"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    returned = out / str(run_dir).lstrip("/")
    assert load_checkpoint(returned / "last.pt")["step"] >= 1 and (returned / "metrics.jsonl").is_file()
