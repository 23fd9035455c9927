"""``generate``: sequences on disk in the DAVIS-like layout, read back equal to the renderer's output."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from jointperception import cli
from jointperception.data.formats import read_flo, read_image, read_mask
from jointperception.data.generate import generate_dataset
from jointperception.data.real import davis_sequences, load_davis_sequence
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError

H, W, T = 64, 96, 3


def _files(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f"*{suffix}"))


def test_writes_every_ground_truth_readably(tmp_path: Path) -> None:
    names = generate_dataset(tmp_path, 2, T, 40, H, W, max_objects=3, photometric=False)
    assert names == ["synth_00000", "synth_00001"]
    all_frames = [f"{t:05d}" for t in range(T)]
    for index, name in enumerate(names):
        seq = render_sequence(40 + index, T, H, W, max_objects=3, photometric=False)
        folder = {kind: tmp_path / kind / f"{H}p" / name for kind in
                  ("JPEGImages", "Annotations", "Layers", "Flow", "Occlusion", "FlowBackward", "OcclusionBackward")}
        assert _files(folder["JPEGImages"], ".png") == [f"{s}.png" for s in all_frames]
        assert _files(folder["Annotations"], ".png") == [f"{s}.png" for s in all_frames]
        assert _files(folder["Layers"], ".png") == [f"{s}.png" for s in all_frames]
        assert _files(folder["Flow"], ".flo") == [f"{s}.flo" for s in all_frames[:-1]]
        assert _files(folder["Occlusion"], ".png") == [f"{s}.png" for s in all_frames[:-1]]
        assert _files(folder["FlowBackward"], ".flo") == [f"{s}.flo" for s in all_frames[1:]]
        assert _files(folder["OcclusionBackward"], ".png") == [f"{s}.png" for s in all_frames[1:]]
        for t, stem in enumerate(all_frames):
            np.testing.assert_array_equal(read_image(folder["JPEGImages"] / f"{stem}.png"), seq.frames[t])
            np.testing.assert_array_equal(read_mask(folder["Annotations"] / f"{stem}.png"), seq.masks[t])
            layers = cv2.imread(str(folder["Layers"] / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(layers, seq.layers[t])
        np.testing.assert_array_equal(read_flo(folder["Flow"] / "00001.flo"), seq.flow_forward[1])
        np.testing.assert_array_equal(read_mask(folder["Occlusion"] / "00001.png"), seq.occlusion_forward[1])
        np.testing.assert_array_equal(read_flo(folder["FlowBackward"] / "00001.flo"), seq.flow_backward[0])
        np.testing.assert_array_equal(read_mask(folder["OcclusionBackward"] / "00002.png"), seq.occlusion_backward[1])
    assert davis_sequences(tmp_path, resolution=f"{H}p") == names  # the DAVIS reader takes this layout
    frames, masks = load_davis_sequence(tmp_path, names[1], resolution=f"{H}p")
    np.testing.assert_array_equal(np.stack(frames), seq.frames)
    np.testing.assert_array_equal(np.stack(masks), seq.masks)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (meta["num_sequences"], meta["num_frames"], meta["seed"], meta["height"], meta["width"]) == (2, T, 40, H, W)
    assert meta["scene_kwargs"] == {"max_objects": 3, "photometric": False}
    assert [s["seed"] for s in meta["sequences"]] == [40, 41]


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate_dataset(tmp_path, 0, T, 0, H, W)
    with pytest.raises(ConfigError):
        generate_dataset(tmp_path, 1, 1, 0, H, W)


def test_cli_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    code = cli.main(["generate", "--out", str(out), "--sequences", "1", "--frames", "2", "--height", "48",
                     "--width", "64", "--seed", "5", "--max-objects", "2", "--no-photometric"])
    assert code == 0
    assert str(out) in capsys.readouterr().out
    frames = sorted((out / "JPEGImages" / "48p" / "synth_00000").glob("*.png"))
    assert len(frames) == 2 and read_image(frames[1]).shape == (48, 64, 3)
    np.testing.assert_array_equal(read_image(frames[1]), render_sequence(5, 2, 48, 64, max_objects=2,
                                                                         photometric=False).frames[1])


@pytest.mark.parametrize("bad", [["--sequences", "0"], ["--frames", "1"], ["--height", "16"], ["--width", "0"],
                                 ["--seed", "-3"], ["--max-objects", "0"], ["--max-translation", "0"]])
def test_cli_rejects_bad_arguments(tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["generate", "--out", str(tmp_path / "x"), *bad])
    assert code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
