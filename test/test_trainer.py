"""Trainer: checkpoints, overfitting, exact resume, SIGTERM, branch alternation with frozen weights, DDP."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from jointperception.commands.train import apply_overrides
from jointperception.config import ExperimentConfig, load_config
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.errors import ConfigError, ModelFileError
from jointperception.eval.synthetic_eval import evaluate_synthetic
from jointperception.models import build_model
from jointperception.models.weights import load_model, save_weights
from jointperception.train import checkpoint as checkpoint_module
from jointperception.train import schedules, trainer
from jointperception.train.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from jointperception.train.loaders import StepSampler
from jointperception.train.metrics_log import MetricsLog, read_metrics

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "train_smoke.yaml"
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def smoke_config(**train: object) -> ExperimentConfig:
    cfg = load_config(SMOKE)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def write_config(path: Path, cfg: ExperimentConfig) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def minimal_checkpoint(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "model_args": {}, "config": {}, "step": step}


def test_failed_save_leaves_previous_checkpoint_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, minimal_checkpoint(1))
    real_save = torch.save

    def save_then_crash(obj: object, file: Path) -> None:
        real_save(obj, file)
        Path(file).write_bytes(Path(file).read_bytes()[:100])  # a half-written temp file
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, minimal_checkpoint(2))
    monkeypatch.undo()
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_corrupt_or_missing_checkpoint_raises_model_file_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, minimal_checkpoint(3))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:-200])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 8)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    for bad in (truncated, garbage, foreign, tmp_path / "missing.pt"):
        with pytest.raises(ModelFileError, match=bad.name):
            load_checkpoint(bad)


def test_init_from_starts_a_run_from_a_model_file_and_resume_ignores_it(tmp_path: Path) -> None:
    tiny_steps = {"mode": "joint", "max_steps": 2, "eval_every": 2, "lr": 1e-9, "min_lr": 1e-9}
    cfg = smoke_config(**tiny_steps)
    torch.manual_seed(5)
    source = save_weights(tmp_path / "start.safetensors", build_model(cfg.model), cfg.model, {})
    started = trainer.train(smoke_config(**tiny_steps, init_from=str(source)), tmp_path / "warm", device="cpu")
    cold = trainer.train(cfg, tmp_path / "cold", device="cpu")
    name = "flow_encoder.levels.0.0.weight"  # a conv weight: lr 1e-9 leaves it where it started
    reference = load_model(source)[0].state_dict()[name]
    torch.testing.assert_close(load_model(started.weights)[0].state_dict()[name], reference)
    assert not torch.allclose(load_model(cold.weights)[0].state_dict()[name], reference)
    # a resumed run restores its checkpoint and never reads init_from (here a file that is gone)
    source.unlink()
    resumed = trainer.train(smoke_config(**tiny_steps | {"max_steps": 4}, init_from=str(source)), tmp_path / "warm",
                            device="cpu", resume="auto")
    assert resumed.step == 4
    with pytest.raises(ModelFileError, match="not found"):
        trainer.train(smoke_config(**tiny_steps, init_from=str(source)), tmp_path / "fresh", device="cpu")
    other = dataclasses.replace(cfg.model, fusion="none")
    foreign = save_weights(tmp_path / "foreign.safetensors", build_model(other), other, {})
    with pytest.raises(ConfigError, match="train.init_from"):
        trainer.train(smoke_config(**tiny_steps, init_from=str(foreign)), tmp_path / "foreign", device="cpu")


def test_rng_state_round_trips_with_weights_only(tmp_path: Path) -> None:
    import random

    import numpy as np

    save_checkpoint(tmp_path / "c.pt", minimal_checkpoint(0) | {"rng": rng_state()})
    first = (random.random(), np.random.rand(), torch.rand(2))
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(2))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_training_overfits_a_fixed_batch(tmp_path: Path) -> None:
    cfg = smoke_config(mode="joint", max_steps=20, eval_every=20, log_every=1, warmup_steps=3, lr=1e-3)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_samples=4))  # every step: the same 4 pairs
    result = trainer.train(cfg, tmp_path / "run", device="cpu", command="pytest")
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert len(losses) == 20 and result.step == 20 and result.signal is None
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]  # losses[0] is measured before any update
    model, model_cfg, metadata = load_model(result.weights)
    assert model_cfg == cfg.model and metadata["command"] == "pytest" and metadata["final_step"] == 20
    assert set(read_metrics(tmp_path / "run")[-1]) >= {"epe", "epe_noc", "mask_j", "occ_acc"}


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    # min_phase_steps fixes the cosine horizon, so max_steps 4 and 8 give the same lr per step
    full = trainer.train(smoke_config(max_steps=8), tmp_path / "full", device="cpu")
    trainer.train(smoke_config(max_steps=4), tmp_path / "split", device="cpu")
    resumed = trainer.train(smoke_config(max_steps=8), tmp_path / "split", device="cpu", resume="auto")
    assert full.step == resumed.step == 8
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["schedule"] == b["schedule"]
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, msg=name)
    losses = [[(r["step"], r["loss"]) for r in read_metrics(tmp_path / run) if r["kind"] == "train"]
              for run in ("full", "split")]
    assert [s for s, _ in losses[0]] == [s for s, _ in losses[1]] == [2, 4, 6, 8]
    assert [l for _, l in losses[1]] == pytest.approx([l for _, l in losses[0]], rel=1e-4)
    with pytest.raises(ConfigError, match="last.pt"):  # a fresh run never overwrites a run folder
        trainer.train(smoke_config(max_steps=8), tmp_path / "full", device="cpu")
    other_model = dataclasses.replace(smoke_config(), model=dataclasses.replace(smoke_config().model, fusion="none"))
    with pytest.raises(ConfigError, match="fusion"):
        trainer.train(other_model, tmp_path / "full", device="cpu", resume="auto")


def test_a_changed_validation_split_restarts_the_best_score(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    trainer.train(smoke_config(max_steps=4), run, device="cpu")
    aligned = smoke_config(max_steps=8)
    aligned = dataclasses.replace(aligned, data=dataclasses.replace(aligned.data, prealign=True))
    with caplog.at_level("WARNING", logger=checkpoint_module.__name__):
        trainer.train(aligned, run, device="cpu", resume="auto")
    assert "validation split changed" in caplog.text and "data.prealign" in caplog.text
    scores = {r["step"]: r["score"] for r in read_metrics(run) if r["kind"] == "val"}
    assert load_checkpoint(run / "last.pt")["best_score"] == min(score for step, score in scores.items() if step > 4)
    assert load_checkpoint(run / "best.pt")["step"] > 4


def test_validation_split_changes_ignore_training_only_keys_and_default_missing_ones() -> None:
    data = load_config(SMOKE).data
    saved = dataclasses.asdict(data)
    assert checkpoint_module.validation_split_changes(saved, data) == []
    more_training = dataclasses.replace(data, train_samples=99, num_workers=3, photo_fraction=0.1)
    assert checkpoint_module.validation_split_changes(saved, more_training) == []
    del saved["prealign"]  # a checkpoint written before the key existed
    assert checkpoint_module.validation_split_changes(saved, data) == []
    assert checkpoint_module.validation_split_changes(saved, dataclasses.replace(data, prealign=True)) == ["prealign"]
    assert checkpoint_module.validation_split_changes(saved, dataclasses.replace(data, val_seed=5)) == ["val_seed"]


def test_cli_overrides_build_a_new_config() -> None:
    cfg = load_config(SMOKE)
    assert apply_overrides(cfg, None) is cfg
    longer = apply_overrides(cfg, 5)
    assert longer.train.max_steps == 5 and cfg.train.max_steps == 16 and longer.data == cfg.data
    with pytest.raises(ConfigError, match="max_steps"):
        apply_overrides(cfg, 0)
    reseeded = apply_overrides(cfg, seed=7)
    assert reseeded.train.seed == 7 and reseeded.train.max_steps == cfg.train.max_steps and cfg.train.seed == 0
    with pytest.raises(ConfigError, match="train.seed"):
        apply_overrides(cfg, seed=-1)


def branch_state_names(branch: str) -> set[str]:
    """State-dict names of a branch: its parameters and the buffers of the same modules (BN stats)."""
    model = build_model(load_config(SMOKE).model)
    ids = {id(p) for p in model.branch_parameters(branch)}
    params = {name for name, p in model.named_parameters() if id(p) in ids}
    modules = {name.rsplit(".", 1)[0] for name in params}
    return params | {name for name, _ in model.named_buffers() if name.rsplit(".", 1)[0] in modules}


def test_iterative_mode_alternates_and_freezes_the_other_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedules, "MIN_RELATIVE_IMPROVEMENT", 1.0)  # every 2nd evaluation of a phase plateaus
    states: dict[int, dict[str, torch.Tensor]] = {}
    real_save = trainer.save_checkpoint

    def recording_save(path: Path, checkpoint: dict) -> None:
        states[checkpoint["step"]] = {k: v.clone() for k, v in checkpoint["model"].items()}
        real_save(path, checkpoint)

    monkeypatch.setattr(trainer, "save_checkpoint", recording_save)
    cfg = smoke_config(max_steps=16, eval_every=4, min_phase_steps=4, patience=1, rounds=1)  # phases of 8 steps
    trainer.train(cfg, tmp_path, device="cpu")
    records = read_metrics(tmp_path)
    assert [(r["step"], r["phase"]) for r in records if r["kind"] == "phase"] == [(8, "segmentation")]
    phases = {r["step"]: r["phase"] for r in records if r["kind"] == "train"}
    assert phases[8] == "flow" and phases[10] == "segmentation" and phases[16] == "segmentation"

    flow, segmentation = branch_state_names("flow"), branch_state_names("segmentation")
    assert any("running_mean" in name for name in flow | segmentation) and not flow & segmentation

    def changed(names: set[str], start: int, end: int) -> set[str]:
        return {n for n in names if not torch.equal(states[start][n], states[end][n])}

    # frozen weights and BatchNorm running statistics stay put, the trained branch moves
    assert changed(flow, 4, 8) and not changed(segmentation, 4, 8)  # flow phase: steps 0..8
    assert changed(segmentation, 8, 16) and not changed(flow, 8, 16)  # segmentation phase: steps 8..16


class Oracle(torch.nn.Module):
    """Returns the ground truth of ``batch`` shifted by ``flow_offset`` pixels in u."""

    def __init__(self, batch: dict[str, torch.Tensor], flow_offset: float):
        super().__init__()
        self.batch, self.flow_offset = batch, flow_offset
        self.frozen = torch.nn.BatchNorm2d(1)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> dict[str, torch.Tensor]:
        assert image1.dtype == torch.float32 and not self.training
        flow = self.batch["flow"].clone()
        flow[:, 0] += self.flow_offset
        return {"flow": flow, "mask_logits": self.batch["mask"] * 20 - 10,
                "occlusion_logits": self.batch["occlusion"] * 20 - 10}


def test_evaluate_synthetic_scores_known_outputs() -> None:
    dataset = SyntheticPairDataset.from_config(load_config(SMOKE).data, "val")
    batch = {key: torch.stack([dataset[i][key] for i in range(3)]) for key in dataset[0]}
    oracle = Oracle(batch, flow_offset=1.5).train()
    oracle.frozen.eval()  # mixed modes, as during a phase with a frozen branch
    metrics = evaluate_synthetic(oracle, [batch], "cpu")
    assert metrics["epe"] == pytest.approx(1.5) and metrics["epe_noc"] == pytest.approx(1.5)
    assert metrics["mask_j"] == 1.0 and metrics["occ_acc"] == 1.0 and metrics["num_samples"] == 3
    assert oracle.training and not oracle.frozen.training  # every module's mode is restored
    with pytest.raises(ValueError):
        evaluate_synthetic(oracle, [], "cpu")


def test_step_sampler_is_a_pure_function_of_step_and_rank() -> None:
    ranks = [StepSampler(10, 3, seed=1, rank=r, world_size=2) for r in (0, 1)]
    stream = [i for step in range(4) for sampler in ranks for i in sampler.step_indices(step)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))  # whole epochs
    assert stream[:10] != stream[10:20]  # each epoch is shuffled anew
    resumed = iter(StepSampler(10, 3, seed=1, start_step=2, rank=1, world_size=2))
    assert [next(resumed) for _ in range(6)] == ranks[1].step_indices(2) + ranks[1].step_indices(3)


def test_metrics_log_on_resume_drops_records_after_the_checkpoint(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for step in range(1, 6):
        log.write(kind="train", step=step, loss=1.0 / step)
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "st')  # torn by a hard kill
    MetricsLog(tmp_path, keep_until_step=3).write(kind="train", step=4, loss=0.0)
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3), (4, 0.0)]
    MetricsLog(tmp_path)  # a fresh run starts a new file
    assert read_metrics(tmp_path) == []


class TwoBranches(torch.nn.Module):
    def __init__(self, orphan: bool = False):
        super().__init__()
        self.seg = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
        self.flow = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
        self.extra = torch.nn.Linear(2, 2) if orphan else None

    def branch_parameters(self, branch: str) -> list[torch.nn.Parameter]:
        return list((self.seg if branch == "segmentation" else self.flow).parameters())


def test_set_trainable_branches_freezes_weights_and_batchnorm() -> None:
    model = TwoBranches()
    active = trainer.set_trainable_branches(model, ("flow",))
    assert {id(p) for p in active} == {id(p) for p in model.flow.parameters()}
    assert not any(p.requires_grad for p in model.seg.parameters())
    assert not model.seg[1].training and model.flow[1].training and model.training
    before = model.seg[1].running_mean.clone()
    model.seg(torch.randn(2, 3, 4, 4) + 5.0)
    assert torch.equal(model.seg[1].running_mean, before)  # frozen BN statistics do not drift
    trainer.set_trainable_branches(model, ("segmentation", "flow"))
    assert all(p.requires_grad for p in model.parameters()) and model.seg[1].training
    with pytest.raises(ValueError, match="extra"):
        trainer.set_trainable_branches(TwoBranches(orphan=True), ("flow",))


def run_cli(args: list[str], log: Path, **kwargs: object) -> subprocess.Popen:
    command = [sys.executable, "-m", "jointperception", "train", *args]
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT, **kwargs)


def test_sigterm_writes_last_checkpoint_and_resume_auto_finishes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "long.yaml", smoke_config(max_steps=100_000, eval_every=100_000, log_every=1))
    out = tmp_path / "run"
    args = ["--config", str(config), "--out", str(out), "--device", "cpu"]
    process = run_cli(args, tmp_path / "first.log")
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() or len(read_metrics(out)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM, (tmp_path / "first.log").read_text()
    stopped = load_checkpoint(out / "last.pt")["step"]
    assert stopped >= 3 and stopped == read_metrics(out)[-1]["step"]

    resumed = run_cli([*args, "--resume", "auto", "--max-steps", str(stopped + 3)], tmp_path / "second.log")
    assert resumed.wait(timeout=120) == 0, (tmp_path / "second.log").read_text()
    assert load_checkpoint(out / "last.pt")["step"] == stopped + 3
    steps = [r["step"] for r in read_metrics(out) if r["kind"] == "train"]
    assert steps == list(range(1, stopped + 4))  # one line per step, none lost or repeated
    assert (out / "best.safetensors").is_file()


def test_ctrl_c_to_the_process_group_with_data_workers_still_saves(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the DataLoader workers too; the run must still stop cleanly."""
    cfg = smoke_config(max_steps=100_000, eval_every=100_000, log_every=1)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=1))
    out = tmp_path / "run"
    args = ["--config", str(write_config(tmp_path / "workers.yaml", cfg)), "--out", str(out), "--device", "cpu"]
    process = run_cli(args, tmp_path / "workers.log", start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() or len(read_metrics(out)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "workers.log").read_text()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 128 + signal.SIGINT, (tmp_path / "workers.log").read_text()
    assert load_checkpoint(out / "last.pt")["step"] >= 3


def torchrun_train(launcher: Path, config: Path, out: Path, *, timeout: float) -> subprocess.CompletedProcess:
    """``jointperception train`` through ``launcher`` in two torchrun CPU (gloo) processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(launcher),
               "train", "--config", str(config), "--out", str(out), "--device", "cpu"]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


DDP_LAUNCHER = """import sys
from jointperception import cli
from jointperception.train import schedules
schedules.MIN_RELATIVE_IMPROVEMENT = 1.0  # force phase switches: exercise the DDP rebuild
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ddp_two_processes_on_cpu(tmp_path: Path) -> None:
    cfg = smoke_config(max_steps=12, eval_every=2, min_phase_steps=2, patience=1)
    config = write_config(tmp_path / "ddp.yaml", cfg)
    launcher = tmp_path / "launch.py"
    launcher.write_text(DDP_LAUNCHER)
    out = tmp_path / "run"
    done = torchrun_train(launcher, config, out, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["step"] == 12 and checkpoint["schedule"]["phase_index"] == 3  # the step-12 plateau ends flow #2
    records = read_metrics(out)
    assert [(r["step"], r["phase"]) for r in records if r["kind"] == "phase"] == [(4, "segmentation"), (8, "flow")]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(2, 13, 2))  # rank 0 alone writes the log
    assert {r["phase"] for r in records if r["kind"] == "train"} == {"flow", "segmentation"}
    assert all(r["num_samples"] == 8 for r in records if r["kind"] == "val")  # both halves of the val set
    assert (out / "best.safetensors").is_file() and not list(out.glob(".*.tmp"))


FAILING_RANK_LAUNCHER = """import os, sys
from jointperception import cli
from jointperception.train import trainer
def fail(*args, **kwargs):
    raise RuntimeError("rank 1 failed on purpose")
if os.environ["RANK"] == "1":
    trainer._train = fail
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ddp_run_with_one_failing_rank_exits_without_hanging(tmp_path: Path) -> None:
    """Rank 1 fails before its first collective: it must not wait at the end-of-run barrier,
    and rank 0 (blocked in DDP's parameter broadcast) is stopped instead of hanging."""
    config = write_config(tmp_path / "ddp.yaml", smoke_config(max_steps=4))
    launcher = tmp_path / "launch.py"
    launcher.write_text(FAILING_RANK_LAUNCHER)
    done = torchrun_train(launcher, config, tmp_path / "run", timeout=120)
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stdout + done.stderr
