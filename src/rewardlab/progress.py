"""Progress on stderr: a live bar in a terminal, plain periodic lines everywhere else.

Why: a tqdm or rich bar redraws one line with carriage returns. In CI logs, ``nohup`` files and job
schedulers (stderr not a terminal) that is either nothing at all or one ever-growing line. There, long work
prints a plain line every ``REWARDLAB_PROGRESS_SECONDS`` (30 by default) and one at the end, e.g.
``train rm: 40/100 steps (40%), 2.10 steps/s, eta 0:00:29, loss=0.5123``. ``DISABLE_TQDM`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any

DEFAULT_SECONDS = 30.0


def interactive() -> bool:
    """Whether stderr is a terminal (a live bar) or a log (plain lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("REWARDLAB_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class PlainProgress:
    """tqdm's small interface (``update``, ``set_postfix``, ``close``, ``n``) printing plain lines."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        interval: float | None = None,
        stream: Any = None,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.interval = _interval() if interval is None else interval
        self.stream = stream
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def _fmt(self, value: float) -> str:
        return _human_bytes(value) if self.unit == "B" else f"{int(value)}"

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (self.n - self.start_n) / elapsed
        done = self._fmt(self.n)
        text = f"{self.desc}: {done}"
        if self.total:
            text += f"/{self._fmt(self.total)}" + ("" if self.unit == "B" else f" {self.unit}")
            text += f" ({100 * self.n / self.total:.0f}%)"
        elif self.unit != "B":
            text += f" {self.unit}"
        rate_text = f"{_human_bytes(rate)}/s" if self.unit == "B" else f"{rate:.2f} {self.unit}/s"
        text += f", {rate_text}"
        if self.total and rate > 0 and self.n < self.total:
            text += f", eta {timedelta(seconds=round((self.total - self.n) / rate))}"
        if self.closed:
            text += f", took {timedelta(seconds=round(elapsed))}"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _print(self) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._print()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n > self.start_n:
            self._print()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int | None, desc: str, unit: str = "it", initial: int = 0, disable: bool = False) -> Any:
    """A tqdm bar on a terminal, a ``PlainProgress`` in logs, a silent one when disabled."""
    if disable or os.environ.get("DISABLE_TQDM"):
        return _Silent()
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr)
    return PlainProgress(total, desc, unit=unit, initial=initial)
