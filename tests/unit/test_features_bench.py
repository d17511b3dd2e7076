"""Benchmark plumbing shared by ``nuru-yield bench …`` (timings are never asserted)."""

from __future__ import annotations

import json
import math

import pytest

from nuru_yield.bench import emit, peak_rss_mb, run_isolated


def test_run_isolated_returns_the_childs_result_time_and_own_peak_memory() -> None:
    measured = run_isolated(math.factorial, 20)
    assert measured.result == math.factorial(20)
    assert measured.seconds >= 0
    assert 0 < measured.peak_rss_mb < peak_rss_mb() * 10


def test_emit_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"plots": 3, "ratio": 0.5})
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    assert json.loads(out) == {"plots": 3, "ratio": 0.5}
