"""A new user's first hour: `make demo` finds a taken port before it runs anything, the
Airflow it leaves behind starts no run by itself under `make airflow`, which binds loopback
and is sized for two cores, and every run the demo starts names its night."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from nuru_yield.cli import main
from nuru_yield.dev.airflow_standalone import (
    CHAIN,
    INGESTION,
    AirflowError,
    AirflowStandalone,
    night_note,
    run_chain,
)

REPO = Path(__file__).resolve().parents[3]


def test_demo_refuses_a_taken_port_in_one_line_before_running_anything(
    nuru_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_airflow(*_: object, **__: object) -> None:
        raise AssertionError("the demo started Airflow although its port is taken")

    monkeypatch.setattr("nuru_yield.dev.airflow_standalone.standalone", no_airflow)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--plots", "100", "--port", str(port)])
    assert exited.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: port {port} on 127.0.0.1 is not free")
    assert "--port" in line and "PORT=" in line
    assert not nuru_home.exists()  # no sample data, no database, no Airflow


class FakeAirflow:
    """Airflow's REST API v2 as far as the harness uses it, recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        # An Airflow home used before: runs of an earlier demo, already finished.
        old = {"dag_run_id": "asset_triggered__2025-12-31T00:00:00", "state": "success"}
        self.runs: dict[str, list[dict]] = {"batch_scoring": [old], "drift_monitoring": [old]}
        self.unseen: dict[str, int] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path.removeprefix("/api/v2")
        self.calls.append((request.method, path, body))
        parts = path.strip("/").split("/")
        if request.method == "GET" and path == "/dags":
            dags = ["feature_materialization", "batch_scoring", "drift_monitoring"]
            return httpx.Response(200, json={"dags": [{"dag_id": d} for d in dags]})
        if request.method == "POST" and parts[-1] == "dagRuns":
            run = {"dag_run_id": body["dag_run_id"], "state": "success"}
            self.runs[parts[1]] = [run]
            self.unseen = {"batch_scoring": 1, "drift_monitoring": 1}  # scheduled a poll later
            return httpx.Response(200, json=run)
        if request.method == "GET" and parts[-1] == "dagRuns":
            dag_id = parts[1]
            if self.unseen.get(dag_id) == 0:  # the asset-triggered run appears, newest first
                new = {"dag_run_id": "asset_triggered__2026-01-01T00:00:00", "state": "success"}
                self.runs[dag_id].insert(0, new)
            if dag_id in self.unseen:
                self.unseen[dag_id] -= 1
            return httpx.Response(200, json={"dag_runs": self.runs.get(dag_id, [])})
        if request.method == "GET" and parts[-1] == "taskInstances":
            return httpx.Response(200, json={"task_instances": []})
        return httpx.Response(200, json={})


def test_chain_runs_are_named_after_their_night_and_the_dags_paused_again(
    tmp_path: Path,
) -> None:
    fake = FakeAirflow()
    client = httpx.Client(base_url="http://airflow", transport=httpx.MockTransport(fake.handle))
    process = subprocess.Popen(["sleep", "30"])
    try:
        airflow = AirflowStandalone(tmp_path, 1, {"standalone": process}, client, "mark")  # type: ignore[arg-type]
        finished = run_chain(airflow, dt.date(2025, 6, 15), stall=10)
    finally:
        process.kill()
        process.wait()

    new = "asset_triggered__2026-01-01T00:00:00"  # not the earlier demo's runs
    assert {finished[d]["dag_run_id"] for d in ("batch_scoring", "drift_monitoring")} == {new}
    [trigger] = [body for method, _, body in fake.calls if method == "POST"]
    # The night is the run's partition key: Airflow keys the asset-triggered runs by it too.
    assert (trigger["partition_key"], trigger["conf"]) == ("2025-06-15", {})
    assert trigger["dag_run_id"].startswith("manual__night_2025-06-15__")
    assert trigger["note"] == night_note(dt.date(2025, 6, 15)) == "night 2025-06-15"
    pauses = [(path, body["is_paused"]) for _, path, body in fake.calls if "is_paused" in body]
    chain = ("feature_materialization", "batch_scoring", "drift_monitoring")
    assert pauses == [(f"/dags/{d}", False) for d in chain] + [(f"/dags/{d}", True) for d in chain]


def test_make_airflow_binds_loopback_is_sized_for_two_cores_and_follows_nuru_schedules() -> None:
    def dry_run(*arguments: str) -> str:
        """The last command `make -n` prints (run from `make test` too: a clean make)."""
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", *arguments],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return done.stdout.strip().splitlines()[-1]

    standalone = dry_run("airflow", "NURU_SCHEDULES=manual")
    assert standalone.endswith("airflow standalone")
    for setting in (
        "AIRFLOW__API__HOST=127.0.0.1",
        "AIRFLOW__API__WORKERS=1",
        "AIRFLOW__CORE__PARALLELISM=4",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1",
        'NURU_SCHEDULES="manual"',
        'AIRFLOW_HOME="' + str(REPO / ".nuru" / "airflow") + '"',  # the demo's Airflow home
        'AIRFLOW__CORE__PLUGINS_FOLDER="' + str(REPO / "plugins") + '"',  # the Forecasts view
    ):
        assert setting in standalone, setting
    backfill = dry_run("airflow-cli", "ARGS=backfill create --dag-id raw_ingestion")
    assert backfill.endswith("airflow backfill create --dag-id raw_ingestion")
    assert 'AIRFLOW_HOME="' + str(REPO / ".nuru" / "airflow") + '"' in backfill
    assert dry_run("demo", "PORT=8123").endswith("nuru-yield demo --port 8123")


def test_the_demo_summary_counts_drift_by_variable_as_the_drift_command_does(
    nuru_home: Path,
) -> None:
    """The summary once said "83 of 260 checks" where `nuru-yield drift` said "3 of 20
    variables": both levels now, each named."""
    import sqlalchemy as sa

    from nuru_yield.config import get_settings
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.db.schema import drift_reports
    from nuru_yield.dev.demo import DEMO_RUN_DATE, render_summary
    from nuru_yield.lake import Lake

    upgrade()
    checks = [  # (feature, county, drifted): two variables overall, three county checks
        ("precip_total", None, True),
        ("gdd_sum", None, False),
        ("precip_total", "Kitui", True),
        ("precip_total", "Embu", False),
        ("gdd_sum", "Kitui", True),
    ]
    rows = [
        {
            "run_date": DEMO_RUN_DATE,
            "feature": feature,
            "county": county,
            "statistic": "psi",
            "value": 0.3,
            "threshold": 0.2,
            "drifted": drifted,
            "status": "drift" if drifted else "ok",
            "n_current": 100,
            "n_reference": 1000,
        }
        for feature, county, drifted in checks
    ]
    with get_engine().begin() as connection:
        connection.execute(sa.insert(drift_reports), rows)

    summary = render_summary(get_settings(), Lake.from_settings(), {}, 60.0)

    (line,) = [line for line in summary.splitlines() if line.startswith("drift on")]
    assert line == (
        f"drift on {DEMO_RUN_DATE}: 1 of 2 variables overall (what `nuru-yield drift` "
        "reports), 2 of 3 variable × county checks"
    )


def test_the_demo_summary_shows_the_night_by_days_after_planting(nuru_home: Path) -> None:
    """An early-season night, band by band: forecasts beside the county normal, what they
    rest on, and how many fall under 100 kg/ha (the first month once collapsed there)."""
    import datetime as dt

    import sqlalchemy as sa

    from nuru_yield.config import get_settings
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.db.schema import predictions
    from nuru_yield.dev.demo import DEMO_RUN_DATE, render_summary
    from nuru_yield.lake import Lake

    upgrade()
    forecasts = [  # (days after planting, forecast, normal, basis)
        (3, 1800.0, 2000.0, "blended"),
        (9, 60.0, 2000.0, "blended"),
        (20, 2100.0, 2000.0, "model"),
        (150, 900.0, 1000.0, "model"),
        (170, 1100.0, 1000.0, "model"),
    ]
    rows = [
        {
            "run_date": DEMO_RUN_DATE,
            "plot_id": plot_id,
            "season_year": 2025,
            "season": "Long Rains",
            "model_name": "champion",
            "model_version": "1",
            "days_after_planting": days,
            "predicted_yield_kg_per_ha": forecast,
            "normal_kg_per_ha": normal,
            "basis": basis,
            "run_id": "run",
            "scored_at": dt.datetime(2025, 4, 10, tzinfo=dt.UTC),
        }
        for plot_id, (days, forecast, normal, basis) in enumerate(forecasts)
    ]
    with get_engine().begin() as connection:
        connection.execute(sa.insert(predictions), rows)

    lines = render_summary(get_settings(), Lake.from_settings(), {}, 60.0).splitlines()
    start = lines.index(
        f"forecasts on {DEMO_RUN_DATE} by days after planting (kg/ha; the county normal is a "
        "normal season's yield):"
    )
    table = [line.split() for line in lines[start + 1 : start + 5]]
    assert table == [
        ["days", "after", "planting", "plots", "forecast", "normal", "<", "100", "basis"],
        ["0–15", "2", "930", "2,000", "1", "blended", "2"],
        ["15–30", "1", "2,100", "2,000", "0", "model", "1"],
        ["150+", "2", "1,000", "1,000", "0", "model", "2"],
    ]
    # Where the night's county bulletins are seen: the Forecasts view of `make airflow`.
    assert any("http://localhost:8080/plugin/forecasts" in line for line in lines)


def test_the_demo_summary_shows_the_nights_county_table(nuru_home: Path) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from nuru_yield.config import get_settings
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.db.schema import county_forecasts
    from nuru_yield.dev.demo import DEMO_RUN_DATE, render_summary
    from nuru_yield.lake import Lake

    upgrade()
    common = {
        "run_date": DEMO_RUN_DATE,
        "season": "Long Rains",
        "season_year": 2025,
        "model_version": "1",
        "run_id": "run",
        "computed_at": dt.datetime(2025, 4, 11, tzinfo=dt.UTC),
    }
    rows = [
        {
            **common,
            "county": "Makueni",
            "lead_days": 24,
            "n_plots": 1285,
            "forecast_kg_per_ha": 690.0,
            "lower_kg_per_ha": 470.0,
            "upper_kg_per_ha": 910.0,
            "pct_of_5yr_mean": 90.8,
            "rain_pct_of_normal": 59.8,
            "skill_lead_days": 30,
            "skill_nrmse": 0.17,
            "naive_nrmse": 0.24,
            "status": "ok",
        },
    ]
    rows.append(
        {
            **dict.fromkeys(rows[0]),
            **common,
            "county": "Embu",
            "n_plots": 8,
            "status": "too_few_plots",
        }
    )
    with get_engine().begin() as connection:
        connection.execute(sa.insert(county_forecasts), rows)

    lines = render_summary(get_settings(), Lake.from_settings(), {}, 60.0).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("county bulletin of"))
    assert [line.split() for line in lines[start + 2 : start + 4]] == [
        ["Embu", "Long", "Rains", "2025", "–", "8", "–", "–", "–", "–", "–", "too_few_plots"],
        [
            "Makueni",
            "Long",
            "Rains",
            "2025",
            "24",
            "1,285",
            "0.69",
            "0.47–0.91",
            "91%",
            "60%",
            "0.17",
            "(0.24)",
            "at",
            "30",
            "d",
            "ok",
        ],
    ]
    assert any(line.strip() == "curl -s localhost:8000/counties/Makueni/forecast" for line in lines)


# --- waiting for a run: progress, not a wall-clock guess ----------------------------------
RUN = "manual__night_2025-06-15__20250101T000000Z"


class ScriptedRun:
    """One ``model_training`` run as the REST API shows it, following a script of what the
    run and its one task do at each (virtual) second; :meth:`sleep` moves time on."""

    def __init__(self, home: Path, script) -> None:
        self.home, self.script, self.now = home, script, 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        run_state, task_state, try_number = self.script(self)
        if request.url.path.endswith("/dagRuns"):
            return httpx.Response(200, json={"dag_runs": [{"dag_run_id": RUN, "state": run_state}]})
        ti = {"task_id": "train_candidates", "dag_run_id": RUN, "map_index": -1, "pid": None}
        ti |= {"state": task_state, "try_number": try_number}
        return httpx.Response(200, json={"task_instances": [ti]})

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def log(self, attempt: int = 1) -> Path:
        folder = self.home / "logs" / "dag_id=model_training" / f"run_id={RUN}"
        return folder / "task_id=train_candidates" / f"attempt={attempt}.log"

    def airflow(self) -> AirflowStandalone:
        client = httpx.Client(base_url="http://airflow", transport=httpx.MockTransport(self.handle))
        return AirflowStandalone(
            self.home, 1, {}, client, "mark", clock=lambda: self.now, sleep=self.sleep
        )


def test_a_long_task_that_keeps_working_is_waited_for_and_shown_every_30_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """25 minutes of training on a busy machine, its log growing every 2 minutes, with a
    10-minute stall limit: the demo once gave up at a fixed 20 minutes."""

    def training(run: ScriptedRun) -> tuple[str, str, int]:
        if run.now >= 25 * 60:
            return "success", "success", 1
        run.log().parent.mkdir(parents=True, exist_ok=True)
        with run.log().open("a") as log_file:  # a candidate fitted, every 2 minutes
            log_file.write("fit\n" if int(run.now) % 120 == 0 else "")
        return "running", "running", 1

    run = ScriptedRun(tmp_path, training)
    with caplog.at_level(logging.INFO, logger="nuru_yield.dev.airflow_standalone"):
        finished = run.airflow().wait_for_run("model_training", RUN, stall=600)

    assert finished["state"] == "success"
    status = [r.getMessage() for r in caplog.records if "waiting for model_training" in r.message]
    assert len(status) == 25 * 60 // 30 - 1  # one line every 30 seconds of waiting
    assert status[0].startswith("airflow: waiting for model_training (running, 30s): ")
    assert "train_candidates running for 30s (log " in status[0]
    assert "train_candidates running for 24m 30s" in status[-1]
    quiet = {line.split("; last sign of progress ")[1] for line in status if "sign of" in line}
    assert quiet == {f"{ago} ago (gives up at 10m 00s)" for ago in ("30s", "1m 00s", "1m 30s")}


def test_a_run_without_progress_gives_up_after_the_stall_time_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    def stuck(run: ScriptedRun) -> tuple[str, str, int]:
        return "running", "running", 1  # no state change, no log, no process

    run = ScriptedRun(tmp_path, stuck)
    with pytest.raises(AirflowError) as stalled:
        run.airflow().wait_for_run("model_training", RUN, stall=600, rerun="`make demo`")

    assert 600 <= run.now < 602  # gave up at the stall time, not before, not much after
    [line] = str(stalled.value).splitlines()
    assert line.startswith(f"model_training run {RUN} made no progress for 10m 00s")
    assert "task train_candidates running for 10m 00s" in line
    assert f"its log: {run.log()}" in line
    assert line.endswith("; to run it again: `make demo`")


def test_a_failed_run_names_the_failed_task_its_log_and_what_to_rerun(tmp_path: Path) -> None:
    def failing(run: ScriptedRun) -> tuple[str, str, int]:
        return ("running", "running", 1) if run.now < 90 else ("failed", "failed", 2)

    run = ScriptedRun(tmp_path, failing)
    with pytest.raises(AirflowError) as failed:
        run.airflow().wait_for_run("model_training", RUN, rerun="`make demo`")

    [line] = str(failed.value).splitlines()
    assert line.startswith(f"model_training run {RUN} failed: task train_candidates failed")
    assert f"its log: {run.log(attempt=2)}" in line
    assert line.endswith("; to run it again: `make demo`")


def test_the_demo_says_how_to_rerun_each_dag_and_wait_longer(tmp_path: Path) -> None:
    from nuru_yield.dev.demo import DEMO_RUN_DATE, rerun_hints

    hints = rerun_hints(tmp_path, DEMO_RUN_DATE)
    assert set(hints) == {INGESTION, "model_training", *CHAIN}
    # raw_ingestion by hand needs the demo's sources, which the demo configures itself.
    assert hints[INGESTION].endswith(
        f"PLOTS_SOURCE={tmp_path}/sources/plots.geojson PLOT_SEASONS_SOURCE="
        f"{tmp_path}/sources/plot_seasons.csv CHIRPS_SOURCE={tmp_path}/sources/chirps "
        f"AGERA5_SOURCE={tmp_path}/sources/agera5 YIELDS_SOURCE={tmp_path}/sources/crop_cuts.csv"
        f" NDVI_SOURCE={tmp_path}/sources/ndvi NDVI_STAC_URL={tmp_path}/sources/stac/catalog.json"
        f" nuru-yield ingest all --date {DEMO_RUN_DATE}`"
    )
    assert "`make demo STALL_MINUTES=30`" in hints["model_training"]
    assert hints["model_training"].endswith(
        f"`NURU_HOME={tmp_path} nuru-yield train --date {DEMO_RUN_DATE}`"
    )
    assert hints["batch_scoring"].endswith(f"nuru-yield score --date {DEMO_RUN_DATE}`")


def test_the_status_line_carries_the_running_task_s_latest_training_progress(
    tmp_path: Path,
) -> None:
    """While `model_training` fits for minutes, the demo's terminal shows where the fit is
    (rounds, time spent, time left), from the task's own log — JSON lines (Airflow 3) or
    plain text."""
    from nuru_yield.dev.airflow_standalone import _latest_progress

    progress = (
        "hold-out fit, 1/3 xgboost (240,757 rows): boosting rounds: 138/500 (28%), 15.0s, ~39s left"
    )
    json_log = tmp_path / "attempt=1.log"
    json_log.write_text(
        "\n".join(
            json.dumps({"event": event, "logger": logger, "level": "info"})
            for event, logger in (
                ("fitting", "nuru_yield.training.candidates"),
                (progress, "nuru_yield.progress"),
                ("still fitting", "nuru_yield.training.candidates"),
            )
        )
    )
    assert _latest_progress(json_log) == f" — {progress}"
    plain = tmp_path / "plain.log"
    plain.write_text(f"2026-12-07 15:07:45,101 INFO nuru_yield.progress: {progress}\n")
    assert _latest_progress(plain) == f" — {progress}"
    silent = tmp_path / "silent.log"
    silent.write_text("nothing yet\n")
    assert _latest_progress(silent) == ""
    assert _latest_progress(tmp_path / "missing.log") == ""


def test_the_demo_summary_says_what_the_drift_report_saw(nuru_home: Path) -> None:
    """A dry early season: the summary names the finding, the season signals in words, the
    model evidence (none), that retraining was not triggered, and what drove the forecasts."""
    from nuru_yield.config import get_settings
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.demo import DEMO_RUN_DATE, render_summary
    from nuru_yield.lake import Lake
    from nuru_yield.names import drift_report_path

    upgrade()
    lake = Lake.from_settings()
    lake.write_json(
        drift_report_path(DEMO_RUN_DATE),
        {
            "finding": "season signal",
            "season_signals": [
                "all plots (Long Rains): rain 38% below the county's normal to date",
                "Makueni (Long Rains): rain 61% below the county's normal to date",
            ],
            "model_evidence": "none: inputs within the training range; no new harvest labels",
            "drivers": "precip_total 41% of driver slots; where the plot lies (…) 0.0%",
            "alert": {"raised": False, "trigger_training": False},
        },
    )

    lines = render_summary(get_settings(), lake, {}, 60.0).splitlines()

    start = next(i for i, line in enumerate(lines) if line.startswith("drift on"))
    assert lines[start + 1 : start + 7] == [
        "  finding: season signal",
        "  season signal: all plots (Long Rains): rain 38% below the county's normal to date",
        "  season signal: Makueni (Long Rains): rain 61% below the county's normal to date",
        "  model evidence: none: inputs within the training range; no new harvest labels",
        "  retraining: not triggered",
        "  drivers: precip_total 41% of driver slots; where the plot lies (…) 0.0%",
    ]
