"""The live view: a bar on a terminal, rare plain log lines otherwise (no flood of redraws in log files)."""

from __future__ import annotations

import io
import logging

import pytest

from agents.backends.usage import UsageMeter
from environment.progress import Progress
from tests.test_environment_episodes import make_record


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_it_logs_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    meter = UsageMeter(in_flight=3, prompt_tokens=100, completion_tokens=20, retries=2)
    progress = Progress(total=10, done=4, meter=meter, log_every_s=30, stream=stream)
    assert not progress.tty and progress.interval == 30
    with caplog.at_level(logging.INFO, logger="environment.progress"):
        for agent in range(3):
            progress.update(make_record(0, agent, rating=6))
            progress.refresh()  # called by the scheduler's ticker; the interval has not passed
        assert caplog.records == []
        progress._last_log -= 31
        progress.refresh()
        progress.close()
    assert stream.getvalue() == ""  # nothing drawn on the stream
    assert len(caplog.records) == 2
    line = caplog.records[0].getMessage()
    assert line.startswith("world 7/10 turns") and "in_flight=3" in line and "tokens=120" in line
    assert "retries=2" in line and "peer=6.0" in line and "rev=6.0" in line


def test_on_a_terminal_it_draws_a_bar_with_the_figures() -> None:
    stream = Terminal()
    progress = Progress(total=5, done=0, meter=UsageMeter(in_flight=1), stream=stream)
    assert progress.tty and progress.interval == 0.5
    progress.update(make_record(0, 0, rating=4))
    progress.refresh()
    progress.close()
    drawn = stream.getvalue()
    assert "1/5" in drawn and "in_flight=1" in drawn and "peer=4" in drawn


def test_disabled_progress_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="environment.progress"):
        progress = Progress(total=5, done=0, meter=UsageMeter(), enabled=False, stream=stream)
        progress.update(make_record(0, 0))
        progress._last_log -= 100
        progress.refresh()
        progress.close()
    assert stream.getvalue() == "" and caplog.records == []
