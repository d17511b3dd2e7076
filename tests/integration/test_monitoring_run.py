"""``run_monitoring`` end to end on a generated lake: drift rows, reports, realized accuracy
once labels arrive, the alert and its cooldown; a dry season as a season signal and inputs
outside the training range as evidence — on SQLite and PostgreSQL, and by the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.db.engine import get_engine
from nuru_yield.db.migrations import upgrade
from nuru_yield.db.schema import drift_reports, model_performance
from nuru_yield.features.columns import FEATURE_COLUMNS, KEY_COLUMNS
from nuru_yield.features.compute import season_to_date
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.monitoring.drift import PREDICTION
from nuru_yield.monitoring.monitor import run_monitoring
from nuru_yield.names import RAW_YIELDS, drift_html_path, drift_report_path, features_path
from tests.integration.test_monitoring_season import (
    RAIN_FACTOR,
    RUN_DATE,
    generate,
    stand_in_model,
    write_prediction_log,
)

VARIABLES = 20  # 19 model features and the prediction


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw inputs 2021–2024 with 2024 labels (the tests hide them until they 'arrive')."""
    root = tmp_path_factory.mktemp("monitoring-run") / "lake"
    generate(root, seed=21, plots=500, start_year=2021, label_2024=True)
    return root


@pytest.fixture
def lake(generated: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """This test's lake: a copy of the generated raw inputs, 2024 labels held back in
    ``labels_2024.parquet`` next to it; three reference years."""
    monkeypatch.setenv("DRIFT_REFERENCE_YEARS", "3")
    reset_settings()
    lake = Lake.from_settings()
    shutil.copytree(generated / "raw", lake.root / "raw")
    labels = lake.read_parquet(RAW_YIELDS)
    lake.write_parquet(RAW_YIELDS, labels.filter(pc.less(labels["season_year"], 2024)))
    lake.write_parquet("held_back/labels.parquet", labels)
    return lake


def _features(lake: Lake, day: dt.date) -> pd.DataFrame:
    """``features/{day}/plot_features.parquet`` (the computation of materialization, without
    its validation reports, which are tested with it)."""
    raw = load_raw(lake, day - dt.timedelta(days=180), day)
    features = season_to_date(raw, day, season_max_days=180).features
    lake.write_parquet(features_path(day), features)
    return features


def _score(lake: Lake, day: dt.date) -> pd.DataFrame:
    """Features for ``day`` and their prediction log."""
    return write_prediction_log(lake, _features(lake, day), day)


def _strict(versions: Sequence[str]) -> dict[str, dict[str, float]]:
    """Evaluation metrics no forecast can meet: realized accuracy always looks worse."""
    return {version: {"rmse": 1.0} for version in versions}


def _rows(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.DataFrame(connection.execute(sa.select(table)).mappings().all())


def test_realized_accuracy_is_filled_once_labels_arrive_and_alerts_once(lake: Lake) -> None:
    upgrade()
    engine = get_engine()
    log = _score(lake, RUN_DATE)

    quiet = run_monitoring(RUN_DATE, predictor=stand_in_model, evaluation=_strict)

    rows = _rows(engine, drift_reports)
    counties = log["county"].nunique()
    assert len(rows) == VARIABLES * (1 + counties)
    overall = rows[rows["county"].isna()].set_index("feature")
    assert overall.loc[PREDICTION, "status"] != "insufficient data"
    assert overall["drifted"].sum() <= 1
    assert set(rows["signal"].dropna()) <= {"season signal", "plot mix"}
    assert overall["current_mean"].notna().all() and overall["reference_mean"].notna().all()
    assert rows["outside_training_share"].isna().all()  # a stand-in model: no training ranges
    assert (overall["n_current"] <= len(log)).all() and overall["n_reference"].min() > 1000
    assert _rows(engine, model_performance).empty  # no 2024 label yet
    assert not quiet.alert.raised
    report = lake.read_json(drift_report_path(RUN_DATE))
    assert report["alert"]["trigger_training"] is False and len(report["variables"]) == len(rows)
    assert "<svg" in lake.read_bytes(drift_html_path(RUN_DATE)).decode() or not report["drifted"]

    # Harvest labels of the 2024 Long Rains arrive.
    lake.write_parquet(RAW_YIELDS, lake.read_parquet("held_back/labels.parquet"))
    alerted = run_monitoring(RUN_DATE, predictor=stand_in_model, evaluation=_strict)

    performance = _rows(engine, model_performance)
    assert set(performance["season"]) == {"Long Rains"} and set(performance["season_year"]) == {
        2024
    }
    assert set(performance["model_version"]) == {"1"}
    labelled = log[KEY_COLUMNS].merge(lake.read_parquet(RAW_YIELDS).to_pandas()[KEY_COLUMNS])
    assert performance["n"].sum() == len(labelled) > 0
    assert performance["lead_time_days"].is_unique
    assert (performance["rmse"] >= performance["mae"]).all()
    assert performance["coverage"].between(0, 1).all()
    assert alerted.alert.trigger
    assert any(reason.startswith("accuracy: 2024 Long Rains") for reason in alerted.alert.reasons)
    assert len(_rows(engine, drift_reports)) == len(rows)  # the rerun replaced D's rows

    # Rerunning the date reproduces its alert (the trigger itself is deduplicated by the
    # DAG's run id `drift_monitoring__D`).
    again = run_monitoring(RUN_DATE, predictor=stand_in_model, evaluation=_strict)
    assert again.alert == alerted.alert

    # The next night nothing changed (features only, no new forecast, no new label).
    next_day = RUN_DATE + dt.timedelta(days=1)
    _features(lake, next_day)
    assert not run_monitoring(next_day, predictor=stand_in_model, evaluation=_strict).alert.raised

    # Three days on, new forecasts change the realized accuracy again: the alert is raised,
    # but retraining was triggered on D, within the cooldown.
    later = RUN_DATE + dt.timedelta(days=3)
    _score(lake, later)
    held = run_monitoring(later, predictor=stand_in_model, evaluation=_strict)
    assert held.alert.raised and not held.alert.trigger
    assert held.alert.suppressed_by == RUN_DATE.isoformat()
    assert held.xcom()["trigger_training"] is False


def _training_ranges(lake: Lake) -> TrainingRanges:
    """The input ranges a champion trained on the run date learns from: its training set
    (the labelled seasons before 2024, cut inside every lead-time band)."""
    from nuru_yield.training.pipeline import build_training_set

    training = lake.read_parquet(build_training_set(RUN_DATE, lake).path).to_pandas()
    return TrainingRanges.fit(training, FEATURE_COLUMNS)


def _with_rain(features: pd.DataFrame, factor: float) -> pd.DataFrame:
    return features.assign(
        precip_total=features["precip_total"] * factor,
        precip_last_30d=features["precip_last_30d"] * factor,
    )


def test_a_dry_season_is_news_and_inputs_never_trained_on_are_evidence(lake: Lake) -> None:
    """Rain at 70% of the past seasons' at the same point of the season drifts (a season
    signal, in words, per county) but lies within what the model was trained on: no alert,
    no retraining. At 40%, many values lie below anything the training seasons held at their
    lead time: model evidence, and retraining is due."""
    upgrade()
    engine = get_engine()
    ranges = _training_ranges(lake)
    features = _features(lake, RUN_DATE)
    write_prediction_log(lake, _with_rain(features, 0.7), RUN_DATE)

    dry = run_monitoring(RUN_DATE, predictor=stand_in_model, ranges=ranges, evaluation=_strict)

    report = dry.report
    rain = {d.variable: d for d in report.overall}["precip_total"]
    assert rain.signal == "season signal" and rain.outside_share < 0.05
    assert report.finding == "season signal"
    assert not dry.alert.raised and dry.xcom()["trigger_training"] is False
    assert report.evidence_summary.startswith("none: inputs within the training range")
    # No county step ran for this night: the report states no normal to date of its own.
    assert report.season_to_date.empty and report.season_signals == []
    rows = _rows(engine, drift_reports)
    stored = rows[rows["county"].isna()].set_index("feature")
    assert stored.loc["precip_total", "signal"] == "season signal"
    assert stored.loc["precip_total", "outside_training_share"] == pytest.approx(rain.outside_share)
    assert stored.loc["precip_total", "current_mean"] < stored.loc["precip_total", "reference_mean"]
    assert stored["outside_training_share"].notna().sum() >= len(FEATURE_COLUMNS) - 2
    written = lake.read_json(drift_report_path(RUN_DATE))
    assert written["finding"] == "season signal" and written["season_to_date"] == []
    page = lake.read_bytes(drift_html_path(RUN_DATE)).decode()
    assert "news for the bulletin, not a model fault" in page and "Retraining is due" not in page

    write_prediction_log(lake, _with_rain(features, RAIN_FACTOR), RUN_DATE)
    beyond = run_monitoring(RUN_DATE, predictor=stand_in_model, ranges=ranges, evaluation=_strict)

    assert beyond.report.finding == "season signal and model evidence"
    assert beyond.alert.trigger
    (reason,) = beyond.alert.reasons
    assert reason.startswith("inputs outside the training range: precip_total ")
    assert {d.variable: d for d in beyond.report.overall}["precip_total"].outside_share > 0.05


def test_the_bulletin_and_the_drift_report_state_the_same_season_to_date(lake: Lake) -> None:
    """One definition of the season to date against the normal to date: on the same night,
    for each county and season, the drift report states the rain % of normal and the words
    of the county bulletin (``county_forecasts``), not a figure of its own."""
    from nuru_yield.db.schema import county_forecasts
    from nuru_yield.scoring.counties import publish_counties

    upgrade()
    features = _with_rain(_features(lake, RUN_DATE), 0.5)
    lake.write_parquet(features_path(RUN_DATE), features)
    write_prediction_log(lake, features, RUN_DATE)
    publish_counties(RUN_DATE, lake=lake)

    run_monitoring(RUN_DATE, predictor=stand_in_model, evaluation=_strict)

    bulletin = _rows(get_engine(), county_forecasts).set_index(["county", "season"])
    assert bulletin["rain_pct_of_normal"].notna().all()
    written = lake.read_json(drift_report_path(RUN_DATE))
    stated = {(row["county"], row["season"]): row for row in written["season_to_date"]}
    assert set(stated) == set(bulletin.index)
    for key, row in bulletin.iterrows():
        assert stated[key]["rain_pct_of_normal"] == pytest.approx(row["rain_pct_of_normal"])
        assert stated[key]["season_signal"] == row["season_signal"]
    said = bulletin[bulletin["season_signal"].notna()]
    assert len(said) > 0  # half the rain: most counties far below their normal
    assert written["season_signals"][: len(said)] == [
        f"{county} ({season} {row.season_year}): {row.season_signal}"
        for (county, season), row in said.iterrows()
    ]
    page = lake.read_bytes(drift_html_path(RUN_DATE)).decode()
    season = page[page.index('<table class="season">') :]
    season = season[: season.index("</table>")]
    for (county, kind), row in bulletin.iterrows():
        line = season[season.index(f'<td class="name">{county}, {kind} {row.season_year}</td>') :]
        assert f"<td>{row.rain_pct_of_normal:.0f}%</td>" in line[: line.index("</tr>")]


@pytest.mark.postgres
def test_cli_on_postgres_writes_rows_and_reports(
    lake: Lake, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from nuru_yield.cli import main

    monkeypatch.setenv("PREDICTIONS_DB_URL", postgres_url)
    reset_settings()
    upgrade()
    _features(lake, RUN_DATE)  # not scored: the features alone are monitored

    main(["drift", "--date", RUN_DATE.isoformat()])
    main(["drift", "--date", RUN_DATE.isoformat()])  # a rerun replaces the date's rows

    out = capsys.readouterr().out
    assert f"drift {RUN_DATE.isoformat()}: {VARIABLES} variables" in out
    assert "alert: no alert" in out
    rows = _rows(get_engine(get_settings().predictions_db_url), drift_reports)
    overall = rows[rows["county"].isna()]
    assert len(overall) == VARIABLES and overall["feature"].is_unique
    assert overall.set_index("feature").loc[PREDICTION, "status"] == "insufficient data"
    assert json.loads(lake.read_bytes(drift_report_path(RUN_DATE)))["source"].endswith(
        "plot_features.parquet"
    )


def test_nothing_to_monitor_is_one_clear_line(lake: Lake, capsys: pytest.CaptureFixture) -> None:
    from nuru_yield.cli import main

    upgrade()
    with pytest.raises(SystemExit) as exit_info:
        main(["drift", "--date", "2024-06-29"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nothing to monitor for 2024-06-29") and "\n" not in err
