"""Write synthetic sequences to disk in a DAVIS-like layout, with every ground truth.

    out/JPEGImages/<H>p/<seq>/NNNNN.png        frames, RGB PNG (lossless, despite the DAVIS name)
    out/Annotations/<H>p/<seq>/NNNNN.png       moving-object masks, 0 / 255
    out/Layers/<H>p/<seq>/NNNNN.png            layer ids, 8-bit grey, 0 = background
    out/Flow/<H>p/<seq>/NNNNN.flo              forward flow t -> t+1, on frame t (named by t)
    out/Occlusion/<H>p/<seq>/NNNNN.png         pixels of t not visible in t+1, 0 / 255 (named by t)
    out/FlowBackward/<H>p/<seq>/NNNNN.flo      backward flow t+1 -> t, on frame t+1 (named by t+1)
    out/OcclusionBackward/<H>p/<seq>/NNNNN.png pixels of t+1 not visible in t (named by t+1)
    out/meta.json                              generator arguments, sizes and per-sequence seeds
Sequence i is rendered from seed ``seed + i`` and named ``synth_{i:05d}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jointperception.data.formats import (
    write_flo,
    write_image,
    write_label_image,
    write_mask,
)
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError, DataFormatError

FOLDERS = ("JPEGImages", "Annotations", "Layers", "Flow", "Occlusion", "FlowBackward", "OcclusionBackward")


def sequence_name(index: int) -> str:
    return f"synth_{index:05d}"


def generate_dataset(out_dir: str | Path, num_sequences: int, num_frames: int, seed: int, height: int, width: int,
                     **scene_kwargs: Any) -> list[str]:
    """Render and write ``num_sequences`` sequences of ``num_frames`` frames; returns their names.

    scene_kwargs go to ``render_sequence`` (max_objects, max_translation, camera_motion,
    photometric). Bad arguments raise ConfigError (from ``render_sequence``), unwritable files
    DataFormatError.
    """
    if num_sequences < 1:
        raise ConfigError(f"num_sequences: must be >= 1, got {num_sequences}")
    out = Path(out_dir)
    resolution = f"{height}p"
    names = []
    for index in range(num_sequences):
        name = sequence_name(index)
        sequence = render_sequence(seed + index, num_frames, height, width, **scene_kwargs)
        folders = {folder: out / folder / resolution / name for folder in FOLDERS}
        try:
            for folder in folders.values():
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataFormatError(f"{out}: cannot create the output folders ({exc.strerror or exc})") from exc
        for t in range(num_frames):
            stem = f"{t:05d}"
            write_image(folders["JPEGImages"] / f"{stem}.png", sequence.frames[t])
            write_mask(folders["Annotations"] / f"{stem}.png", sequence.masks[t])
            write_label_image(folders["Layers"] / f"{stem}.png", sequence.layers[t])
            if t + 1 < num_frames:
                write_flo(folders["Flow"] / f"{stem}.flo", sequence.flow_forward[t])
                write_mask(folders["Occlusion"] / f"{stem}.png", sequence.occlusion_forward[t])
            if t > 0:
                write_flo(folders["FlowBackward"] / f"{stem}.flo", sequence.flow_backward[t - 1])
                write_mask(folders["OcclusionBackward"] / f"{stem}.png", sequence.occlusion_backward[t - 1])
        names.append(name)
    meta = {
        "generator": "jointperception.data.synthetic.render_sequence",
        "num_sequences": num_sequences,
        "num_frames": num_frames,
        "seed": seed,
        "height": height,
        "width": width,
        "scene_kwargs": scene_kwargs,
        "sequences": [{"name": name, "seed": seed + index} for index, name in enumerate(names)],
        "layout": {folder: f"{folder}/{resolution}/<sequence>/NNNNN" for folder in FOLDERS},
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        raise DataFormatError(f"{out / 'meta.json'}: cannot write file ({exc.strerror or exc})") from exc
    return names
