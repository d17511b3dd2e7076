"""Benchmark plumbing shared by ``nuru-yield bench …`` (timings are never asserted)."""

from __future__ import annotations

import json
import math

import pytest

from nuru_yield.dev.bench import emit, peak_rss_mb, run_isolated


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


def test_run_isolated_many_keeps_order_and_measures_each_process_alone() -> None:
    from nuru_yield.dev.bench import run_isolated_many

    ballast = bytearray(300 * 1024 * 1024)  # the parent's memory must not count for a child
    ballast[::4096] = b"x" * len(ballast[::4096])
    measured, wall = run_isolated_many(math.factorial, [(n,) for n in range(5, 10)], 2)
    assert [m.result for m in measured] == [math.factorial(n) for n in range(5, 10)]
    assert all(m.peak_rss_mb < 200 for m in measured), [m.peak_rss_mb for m in measured]
    assert wall >= max(m.seconds for m in measured)
    del ballast


def test_simulated_night_hands_shards_to_the_first_free_worker() -> None:
    from nuru_yield.dev.bench.night import default_shards, makespan, simulate

    assert makespan([4, 4, 4, 4], 1) == 16
    assert makespan([4, 4, 4, 4], 2) == 8
    assert makespan([5, 1, 1, 1], 2) == 5  # the long shard sets the pace
    assert makespan([3, 3, 3], 8) == 3  # more workers than shards
    assert simulate(10, [[4, 4], [2, 2, 2, 2]], 2) == 10 + 4 + 4
    assert (default_shards(1), default_shards(250_000), default_shards(10_000_000)) == (1, 1, 40)
