"""INT8 entropy calibration for TensorRT engine builds, on preprocessed (image1, image2) pairs.

The ``tensorrt`` module is passed in by the builder (``export.tensorrt.import_tensorrt``); this
module never imports it itself.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from jointperception.errors import InputError
from jointperception.export.engine_cache import atomic_write
from jointperception.models.perception import INPUT_NAMES

LOG = logging.getLogger(__name__)


def pair_calibrator(trt: ModuleType, pairs: Iterable[tuple[np.ndarray, np.ndarray]] | None,
                    input_shape: tuple[int, ...], cache_path: Path | None, device: torch.device) -> Any:
    """IInt8EntropyCalibrator2 over preprocessed pairs ((1, 3, H, W) float32 image1, image2).

    With ``pairs`` it always calibrates afresh and writes ``cache_path``; without, TensorRT reads
    the table from ``cache_path``. Problems inside TensorRT's callbacks end calibration and are
    kept in ``error`` for the builder to raise (an exception must not cross into TensorRT).
    """
    batches: Iterator[tuple[np.ndarray, np.ndarray]] = iter(pairs if pairs is not None else ())

    class PairCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.count = 0
            self.error: Exception | None = None
            self._held: dict[str, torch.Tensor] = {}  # device inputs; alive until the next batch

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            pair = next(batches, None)
            if pair is None or self.error is not None:
                return None
            try:
                if any(np.shape(image) != tuple(input_shape) for image in pair):
                    raise InputError(f"calibration pair {self.count}: shapes {[np.shape(i) for i in pair]}, "
                                     f"the engine takes {tuple(input_shape)}")
                self._held = {name: torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
                              for name, image in zip(INPUT_NAMES, pair)}
                torch.cuda.synchronize(device)
            except (InputError, RuntimeError) as exc:  # RuntimeError: CUDA out of memory and kin
                self.error = exc
                return None
            self.count += 1
            return [self._held[name].data_ptr() for name in names]

        def read_calibration_cache(self) -> bytes | None:
            if pairs is None and cache_path is not None and cache_path.is_file():
                LOG.info("INT8 calibration: reading the calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path is not None:
                atomic_write(cache_path, bytes(cache))
                LOG.info("INT8 calibration: %d pairs, table written to %s", self.count, cache_path)

    return PairCalibrator()
