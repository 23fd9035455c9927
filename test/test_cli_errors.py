"""Issue #2 bad-input list through the real command line: each case ends with exit code 2 and
one line on stderr that names the problem (the library-level checks live in test_formats,
test_sources and test_config)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jointperception.cli import EXIT_USER_ERROR, main
from jointperception.config import ModelConfig
from jointperception.data.formats import write_image
from jointperception.models import build_model
from jointperception.models.weights import save_weights


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_weights(path, build_model(ModelConfig()), ModelConfig(), {"note": "untrained, for tests"})
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def _frames(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate(sizes):
        paths.append(folder / f"{index:03d}.png")
        write_image(paths[-1], rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return paths


def test_frames_of_different_sizes(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _frames(tmp_path / "frames", [(48, 64), (48, 64), (40, 64)])
    code = main(["predict", "--input", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
                 "--model", str(model_file), "--network-size", "64x48"])
    _one_line_error(capsys, code, str(paths[2]))


def test_unreadable_image(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _frames(tmp_path / "frames", [(48, 64), (48, 64)])
    paths[1].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code = main(["predict", "--input", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
                 "--model", str(model_file), "--network-size", "64x48"])
    _one_line_error(capsys, code, str(paths[1]))


@pytest.mark.parametrize(
    "text, needle",
    [("train:\n  lerning_rate: 0.1\n", "train.lerning_rate"), ("train:\n  batch_size: -2\n", "train.batch_size")],
)
def test_bad_training_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"])
    _one_line_error(capsys, code, needle, str(config))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_photo_textures_in_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "photo.yaml"
    config.write_text(f"data:\n  photo_textures: [\"*/*.jpg\"]\n  photo_root: {tmp_path / 'no_photos'}\n")
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"])
    _one_line_error(capsys, code, "no_photos", "photo texture folder not found")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_corrupt_training_checkpoint_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    smoke = Path(__file__).resolve().parents[1] / "config" / "train_smoke.yaml"
    code = main(["train", "--config", str(smoke), "--out", str(tmp_path / "run"),
                 "--resume", str(broken), "--device", "cpu"])
    _one_line_error(capsys, code, str(broken))


def test_missing_motion_model(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--model", str(model_file), "--motion-model", str(tmp_path / "nope.safetensors"),
                 "--suites", "synthetic", "--synthetic-pairs", "1"])
    _one_line_error(capsys, code, "nope.safetensors", "not found")


def test_eval_precision_the_backend_cannot_run(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--model", str(model_file), "--precision", "int8", "--suites", "synthetic", "--synthetic-pairs", "1",
                 "--data-root", str(tmp_path)])
    _one_line_error(capsys, code, "backend torch runs fp32, fp16, not int8")
