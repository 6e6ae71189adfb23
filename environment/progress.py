"""Live view: interactions/s, calls in flight, tokens, retries and mean ratings while a world runs.

On a terminal: a tqdm bar refreshed at most every `tty_interval` seconds. Otherwise (a log file, CI, a batch job):
one plain log line every `log_every_s` seconds, so logs stay readable instead of filling with bar redraws.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from agents.backends.usage import UsageMeter, UsageTotal
from environment.analysis import PEER_RATING, Tally

log = logging.getLogger("environment.progress")
MEANS = {"peer": PEER_RATING, "draft": "draft_alignment", "rev": "revision_alignment"}  # shown name -> column


class Progress:
    """Counts committed turns and shows the live figures; `interval` is how often the scheduler calls `refresh`."""

    def __init__(
        self,
        total: int,
        done: int,
        meter: UsageMeter | UsageTotal,
        enabled: bool = True,
        tty_interval: float = 0.5,
        log_every_s: float = 30.0,
        stream: TextIO | None = None,
    ) -> None:
        self.meter, self.total, self.done = meter, total, done
        self.started = time.perf_counter()
        self.new = 0
        self._tally = Tally()
        stream = stream or sys.stderr
        self.tty = enabled and stream.isatty()
        self.enabled = enabled
        self.interval = tty_interval if self.tty else max(1.0, float(log_every_s))
        self._last_log = time.monotonic()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="turn", dynamic_ncols=True, file=stream,
                            mininterval=tty_interval, desc="world")  # fmt: skip

    def update(self, record: dict[str, Any]) -> None:
        """Count one committed record."""
        self.new += 1
        self.done += 1
        self._tally.add(record)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(self.figures(), refresh=False)

    def rate(self) -> float:
        """Interactions per second committed by this process."""
        return self.new / max(1e-9, time.perf_counter() - self.started)

    def figures(self) -> dict[str, Any]:
        """The live figures, with the running means (`MEANS`) over the records counted, to two decimals."""
        means = {name: self._tally.mean(column, 2) for name, column in MEANS.items()}
        return {"int/s": round(self.rate(), 3), "in_flight": self.meter.in_flight, "tokens": self.meter.tokens,
                "retries": self.meter.retries, **means}  # fmt: skip

    def refresh(self, final: bool = False) -> None:
        """Redraw the bar (terminal) or log a line if `log_every_s` has passed or this is the `final` one (no
        terminal)."""
        if self.bar is not None:
            self.bar.set_postfix(self.figures(), refresh=True)
        elif self.enabled and (final or time.monotonic() - self._last_log >= self.interval):
            self._last_log = time.monotonic()
            figures = " ".join(f"{k}={v}" for k, v in self.figures().items())
            log.info(f"world {self.done}/{self.total} turns {figures}")

    def close(self) -> None:
        self.refresh(final=True)
        if self.bar is not None:
            self.bar.close()
