from __future__ import annotations

import io

from tenfold.core.progress import Progress


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("reason", total=4, unit="rounds", interval_s=0, stream=out) as progress:
        progress.update(1, note="10 facts")
        progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("reason: 1/4 rounds (10 facts), ")
    assert lines[1].startswith("reason: 2/4 rounds (10 facts), ") and "left" in lines[1]


def test_lines_are_rate_limited() -> None:
    out = io.StringIO()
    with Progress("fit", interval_s=3600, stream=out) as progress:
        for i in range(100):
            progress.update(i)
    assert out.getvalue() == ""


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    with Progress("fit", quiet=True, interval_s=0, stream=out) as progress:
        progress.update(5, total=10)
    assert out.getvalue() == "" and not progress.interactive


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_goes_away() -> None:
    out = _Tty()
    with Progress("bench", total=3, stream=out) as progress:
        assert progress.interactive
        progress.update(2, note="core")
    assert "Traceback" not in out.getvalue()


def test_a_clock_ticks_for_work_that_reports_nothing() -> None:
    import threading
    import time

    out = io.StringIO()
    with Progress("fit", total=30, unit="s", interval_s=0, stream=out, clock=True):
        time.sleep(1.2)
    lines = out.getvalue().splitlines()
    assert lines and lines[0].startswith("fit: ") and "/30 s" in lines[0]
    assert "left" in lines[-1]
    assert not any(t.name == "progress-clock" for t in threading.enumerate())  # stopped
    quiet = io.StringIO()
    with Progress("fit", quiet=True, interval_s=0, stream=quiet, clock=True):
        time.sleep(0.6)
    assert quiet.getvalue() == ""
