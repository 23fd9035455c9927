"""replay-fleet on a real local Ray (2 CPUs, loopback only, one session for the module): tiny
record-sample bags replayed by the bundled model. The good bags' output bags are byte-identical
to sequential ``replay``; a corrupt bag fails alone with its cause; a re-run skips complete bags;
a worker killed mid-bag is re-run by Ray."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from jointperception.cli import main
from jointperception.commands.replay_fleet import EXIT_SOME_FAILED, SUMMARY_HTML, SUMMARY_JSON
from jointperception.fleet.inputs import expand_bags, folder_names
from jointperception.fleet.task import ATTEMPT_FILE, DONE_FILE, OUT_BAG

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed (pip install 'jointperception[fleet]')")
SIZE = ["--network-size", "64x48"]
GOOD = ("bag0", "bag1", "bag2")
# metrics.json fields that are timings or paths: everything else must equal sequential replay's
TIMED = {"latency_ms", "throughput_fps", "wall_s", "output_bag"}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """The module's one Ray session, started as replay-fleet starts it; replay-fleet reuses it."""
    from jointperception.fleet.ray_runner import ray_session

    with ray_session(None, num_cpus=2):
        yield


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three good record-sample bags (4 frames of 64x48, GT topics) and a corrupt one
    (a copy of bag0 whose mcap file is cut after 300 bytes)."""
    root = tmp_path_factory.mktemp("bags")
    for seed, name in enumerate(GOOD):
        assert main(["record-sample", "--out", str(root / name), "--frames", "4", "--size", "64x48",
                     "--seed", str(seed)]) == 0
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_bytes((root / "bag0" / "metadata.yaml").read_bytes())
    (corrupt / "bag0.mcap").write_bytes((root / "bag0" / "bag0.mcap").read_bytes()[:300])
    return root


@pytest.fixture(scope="module")
def fleet(ray_local: None, bags: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """(fleet folder, exit status) of one replay-fleet run over the four bags."""
    out = tmp_path_factory.mktemp("fleet") / "out"
    return out, main(["replay-fleet", str(bags / "*"), "--out", str(out), *SIZE])


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Sequential replay in this process on one thread, as each fleet task (torch threads beyond a
    busy machine's free cores slow it down many times over); the count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _strip_timed(metrics: dict) -> dict:
    kept = {key: value for key, value in metrics.items() if key not in TIMED}
    kept["per_frame"] = [{k: v for k, v in row.items() if k != "latency_ms"} for row in metrics["per_frame"]]
    return kept


def test_local_ray_listens_on_loopback_only(ray_local: None) -> None:
    import ray

    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_good_bags_equal_sequential_replay_and_the_corrupt_one_is_named(
        fleet: tuple[Path, int], bags: Path, tmp_path: Path, one_torch_thread: None) -> None:
    out, status = fleet
    assert status == EXIT_SOME_FAILED
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert [(f["name"], f["bag"]) for f in summary["failures"]] == [("corrupt", str((bags / "corrupt").resolve()))]
    assert "not a readable rosbag2 bag" in summary["failures"][0]["cause"]
    assert not (out / "corrupt").exists()  # nothing half-written left
    for name in GOOD:
        sequential = tmp_path / name
        assert main(["replay", str(bags / name), "--out", str(sequential / OUT_BAG), *SIZE]) == 0
        ours, theirs = out / name / OUT_BAG, sequential / OUT_BAG
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
        for file in theirs.iterdir():
            assert (ours / file.name).read_bytes() == file.read_bytes(), f"{name}/{file.name}"
        fleet_metrics = json.loads((out / name / "metrics.json").read_text())
        assert _strip_timed(fleet_metrics) == _strip_timed(json.loads((sequential / "metrics.json").read_text()))
        assert fleet_metrics["frames"]["processed"] == 3 and set(fleet_metrics["gt"]) == {"mask", "flow", "occlusion"}
    rows = {row["name"]: row for row in summary["per_bag"]}
    assert summary["frames_processed"] == 9
    assert sorted(summary["worst"]) == sorted(GOOD)
    j = [rows[name]["mask_j_mean"] for name in summary["worst"]]
    assert j == sorted(j)  # worst first: the lowest mask J
    page = (out / SUMMARY_HTML).read_text()
    assert page.count("data:image/png;base64,") == 2 and "not a readable rosbag2 bag" in page
    assert all(f'href="{name}/report.html"' in page for name in GOOD)


def test_rerun_skips_complete_bags_and_redoes_incomplete_or_changed_ones(fleet: tuple[Path, int], bags: Path) -> None:
    out, _status = fleet
    stamps = {name: (out / name / DONE_FILE).stat().st_mtime_ns for name in GOOD}
    (out / "bag1" / DONE_FILE).unlink()  # as if the run was killed before bag1 completed
    assert main(["replay-fleet", str(bags / "*"), "--out", str(out), *SIZE]) == EXIT_SOME_FAILED
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert {row["name"]: row["status"] for row in summary["per_bag"]} == {
        "bag0": "skipped", "bag1": "done", "bag2": "skipped", "corrupt": "failed"}
    assert [(out / name / DONE_FILE).stat().st_mtime_ns == stamps[name] for name in ("bag0", "bag2")] == [True, True]
    assert summary["frames_processed"] == 9  # skipped bags are summarised from their metrics.json
    # another setting is another key: bag0 is redone
    assert main(["replay-fleet", str(bags / "bag0"), "--out", str(out), *SIZE, "--mask-threshold", "0.6"]) == 0
    assert json.loads((out / SUMMARY_JSON).read_text())["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    assert json.loads((out / "bag0" / "metrics.json").read_text())["mask_threshold"] == 0.6


def test_a_worker_killed_mid_bag_is_retried_and_every_bag_completes(ray_local: None, bags: Path,
                                                                    tmp_path: Path) -> None:
    long_bag = tmp_path / "long"
    assert main(["record-sample", "--out", str(long_bag), "--frames", "16", "--size", "64x48", "--seed", "7"]) == 0
    out = tmp_path / "out"
    status: list[int] = []
    run = threading.Thread(target=lambda: status.append(main(
        ["replay-fleet", str(long_bag), str(bags / "bag1"), str(bags / "bag2"), "--out", str(out), *SIZE])))
    run.start()
    attempt = out / "long" / ATTEMPT_FILE
    deadline = time.monotonic() + 60  # a fresh worker imports torch first: slow on a busy machine
    while not attempt.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    killed = json.loads(attempt.read_text())["pid"]
    assert not (out / "long" / DONE_FILE).exists()  # mid-bag
    os.kill(killed, signal.SIGKILL)
    run.join(timeout=120)
    assert status == [0]
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert json.loads((out / "long" / DONE_FILE).read_text())["pid"] != killed  # a new worker finished it
    assert json.loads((out / "long" / "metrics.json").read_text())["frames"]["processed"] == 15


def test_a_bag_shorter_than_its_metadata_is_a_warning_of_the_fleet(ray_local: None, bags: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its frames are replayed (done, not failed); fleet.json, the report and stderr name the
    shortfall, and the exit status is EXIT_SOME_FAILED, as for a failed bag."""
    short = tmp_path / "short"
    shutil.copytree(bags / "bag0", short)
    metadata = yaml.safe_load((short / "metadata.yaml").read_text())
    for entry in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["message_count"] += 2
    (short / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    out = tmp_path / "out"
    assert main(["replay-fleet", str(short), "--out", str(out), *SIZE]) == EXIT_SOME_FAILED
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 0} and summary["failures"] == []
    expected = f"{short.resolve()}: the metadata lists 6 messages on /camera/image_raw, the storage gave 4"
    assert summary["warnings"] == [{"name": "short", "bag": str(short.resolve()), "warning": expected}]
    assert f"replay-fleet: warning: short: {expected}" in capsys.readouterr().err
    assert expected in (out / SUMMARY_HTML).read_text()


def test_bag_lists_patterns_and_shared_names(bags: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    relative = os.path.relpath(bags / "bag2", tmp_path)
    listing.write_text(f"# two bags\n{bags / 'bag1'}\n\n{relative}  # relative to the list's folder\n")
    found = expand_bags([str(listing), str(bags / "bag*"), str(bags / "bag1")])
    assert found == [(bags / name).resolve() for name in ("bag1", "bag2", "bag0")]
    names = folder_names([Path("/a/run1/bag"), Path("/a/run2/bag"), Path("/a/other.mcap")])
    assert names[Path("/a/other.mcap")] == "other"
    assert len({names[Path("/a/run1/bag")], names[Path("/a/run2/bag")]}) == 2
    assert names == folder_names(list(names))  # the same on every run


def test_bad_input_exits_2_with_one_line(bags: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["replay-fleet", str(tmp_path / "absent"), "--out", out]) == 2
    assert "no such bag, list file or pattern" in capsys.readouterr().err
    assert main(["replay-fleet", str(tmp_path / "none*"), "--out", out]) == 2
    assert "matches no rosbag2 bag" in capsys.readouterr().err
    assert main(["replay-fleet", str(bags / "bag0"), "--out", out, "--device", "cuda"]) == 2
    assert "--gpus-per-bag > 0" in capsys.readouterr().err
    assert main(["replay-fleet", str(bags / "bag0"), "--out", out, "--model", str(tmp_path / "m.safetensors")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
