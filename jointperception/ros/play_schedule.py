"""When ``bag_player`` publishes each message: pure timing, tested without spinning.

Message i of a pass is due at the pass start plus i / rate_hz (fixed rate) or its log-time offset
from the pass's first message / rate (bag timing). With ``--loop`` the next pass starts one period
after the last message of this one, so a 15 Hz bag loops at 15 Hz: the period is 1 / rate_hz, or
the pass's mean message interval / rate (0 for a pass of one message).
"""
from __future__ import annotations


class PlaySchedule:
    """Due times (time.monotonic() seconds) of the messages of successive passes over a bag."""

    def __init__(self, start: float, rate: float = 1.0, rate_hz: float | None = None) -> None:
        self.pass_start = start
        self.rate = rate
        self.rate_hz = rate_hz
        self._first_log: int | None = None  # log time (ns) of the pass's first message
        self._last: tuple[int, int, float] | None = None  # (index, log time ns, due) of the newest message

    def due(self, index: int, log_time: int) -> float:
        """Due time of message ``index`` (0-based within the pass) logged at ``log_time`` ns."""
        self._first_log = log_time if self._first_log is None else self._first_log
        if self.rate_hz is not None:
            due = self.pass_start + index / self.rate_hz
        else:
            due = self.pass_start + (log_time - self._first_log) / 1e9 / self.rate
        self._last = (index, log_time, due)
        return due

    def shift(self, seconds: float) -> None:
        """Move the rest of the schedule ``seconds`` later (the player fell behind; no catch-up burst)."""
        self.pass_start += seconds
        if self._last is not None:
            index, log_time, due = self._last
            self._last = (index, log_time, due + seconds)

    def period(self) -> float:
        """Seconds between messages: 1 / rate_hz, or the pass's mean log-time interval / rate."""
        if self.rate_hz is not None:
            return 1.0 / self.rate_hz
        if self._last is None or self._last[0] == 0:
            return 0.0
        index, log_time, _ = self._last
        return (log_time - self._first_log) / 1e9 / index / self.rate

    def next_pass(self) -> None:
        """Start the next pass one period after the last message of this one."""
        if self._last is not None:
            self.pass_start = self._last[2] + self.period()
        self._first_log, self._last = None, None
