"""``metrics.jsonl``: one JSON object per line (train, val and phase records) in the run folder."""
from __future__ import annotations

import json
from pathlib import Path

from jointperception.outputs import write_text_atomic

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Appends records ``{"kind": ..., "step": ..., ...}``; a no-op when ``enabled`` is False.

    ``keep_until_step``: on resume, drop the records written after the checkpoint's step
    (a hard kill can leave some), so the file describes exactly one run history.
    ``None`` starts a new file.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True, keep_until_step: int | None = None):
        self.path = Path(run_dir) / METRICS_NAME
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if keep_until_step is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    step = json.loads(line)["step"]
                except json.JSONDecodeError:  # a write torn by a hard kill: nothing after it is kept
                    break
                if step <= keep_until_step:
                    kept.append(line)
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))  # a kill here keeps the old log

    def write(self, **record: object) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (or of ``path/metrics.jsonl`` for a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
