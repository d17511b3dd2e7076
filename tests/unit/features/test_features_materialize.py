"""The features partition: lake I/O, the great-expectations gate, reruns and the CLI."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nuru_yield import names
from nuru_yield.cli import main
from nuru_yield.config import reset_settings
from nuru_yield.errors import DataValidationError
from nuru_yield.features.checks import NDVI_CHECKS, WEATHER_CHECKS, Check, plot_checks
from nuru_yield.features.columns import OUTPUT_SCHEMA
from nuru_yield.features.materialize import materialize
from nuru_yield.features.raw import RawInputs, load_raw
from nuru_yield.features.validation import run_suite
from nuru_yield.lake import Lake
from nuru_yield.raw_layout import write_ndvi_year
from tests.unit.features.test_features import AS_OF, PLANTED, cells, ndvi, plot, raw, weather


def write_raw(lake: Lake, inputs: RawInputs) -> None:
    """Write hand-made tables in the raw contract's layout (weather by year, NDVI by year
    and plot bucket)."""
    lake.write_parquet(names.RAW_PLOTS, _dated(inputs.plots, "planting_date"))
    lake.write_parquet(names.RAW_WEATHER_CELLS, inputs.cells)
    for year, rows in inputs.weather.groupby(inputs.weather["date"].dt.year):
        lake.write_parquet(names.weather_year_path(int(year)), _dated(rows, "date"))
    for year, rows in inputs.ndvi.groupby(inputs.ndvi["date"].dt.year):
        table = _dated(rows, "date")
        write_ndvi_year(lake, int(year), table.schema, [table])


def _dated(frame: pd.DataFrame, column: str) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, table[column].cast(pa.date32()))


def ten_plots(bad: int = 0) -> RawInputs:
    """Ten plot-seasons in progress on AS_OF (the first ``bad`` without county) and a few
    bad observations, all within the 5% threshold."""
    plots = [plot(plot_id=i, county=None if i < bad else "Kisumu") for i in range(10)]
    plots.append(plot(plot_id=99, planting_date=pd.Timestamp("2024-04-01"), season_year=2024))
    precip = [0.0, 2.0, 0.0] * 60
    precip[100] = np.nan  # one NaN rain day, 2025-03-11
    observations = ndvi(
        *[
            (i, PLANTED + dt.timedelta(d), 0.3 + d / 100, 0.1)
            for i in range(10)
            if i != 3
            for d in (3, 10, 17)
        ],
        (3, PLANTED + dt.timedelta(5), 0.6, 0.9),  # plot 3 has only a cloudy observation
        (4, PLANTED + dt.timedelta(12), 5.0, 0.0),  # an impossible NDVI
    )
    return raw(plots, weather(100, dt.date(2024, 12, 1), precip), observations)


@pytest.fixture
def lake() -> Lake:
    return Lake.from_settings()


def test_load_raw_reads_the_needed_years_and_dates_only(lake: Lake) -> None:
    inputs = ten_plots()
    write_raw(lake, inputs)
    loaded = load_raw(lake, dt.date(2025, 1, 1), AS_OF)
    assert loaded.weather["date"].min() == pd.Timestamp("2025-01-01")
    assert loaded.weather["date"].max() == pd.Timestamp(AS_OF)
    assert sorted(loaded.plots["plot_id"]) == [*range(10), 99]  # 2024 could still run
    assert len(load_raw(lake).weather) == len(inputs.weather)


def test_load_raw_names_a_missing_contract_column(lake: Lake) -> None:
    write_raw(lake, ten_plots())
    renamed = cells((0.0, 35.0)).rename(columns={"latitude": "lat"})
    lake.write_parquet(names.RAW_WEATHER_CELLS, renamed)
    with pytest.raises(DataValidationError, match=r"cells.parquet lacks column\(s\) latitude "):
        load_raw(lake, dt.date(2025, 1, 1), AS_OF)


def test_materialize_writes_features_rejected_and_validation(lake: Lake) -> None:
    write_raw(lake, ten_plots())
    result = materialize(AS_OF, lake=lake)

    assert (result.rows, result.rejected) == (10, 0)
    features = lake.read_parquet(names.features_path(AS_OF))
    assert features.num_rows == 10 and features["as_of_date"].type == pa.date32()
    report = lake.read_json(names.validation_path(AS_OF))
    assert report["status"] == "passed" and report["failed_checks"] == []
    counts = report["counts"]
    assert counts["weather_rows_with_bad_values"] == 1  # the NaN rain day
    assert counts["ndvi_rows_dropped"] == 1 and counts["ndvi_rows_cloudy"] == 1
    assert counts["plot_features_without_clear_ndvi"] == 1
    checks = {(c["table"], c["check"]): c for c in report["checks"]}
    assert checks[("weather", "precip_missing")]["unexpected_count"] == 1
    assert checks[("ndvi", "ndvi_out_of_range")]["unexpected_count"] == 1
    assert checks[("plot_features", "duplicate_key")]["success"] is True
    assert lake.read_parquet(names.rejected_path(AS_OF)).num_rows == 0


def test_the_gate_fails_naming_the_check_and_numbers_above_the_threshold(lake: Lake) -> None:
    write_raw(lake, ten_plots(bad=1))  # 10% without county, above the default 5%
    with pytest.raises(DataValidationError) as failure:
        materialize(AS_OF, lake=lake)
    message = str(failure.value)
    assert "plots.missing_county" in message and "1 of 10 rows" in message
    assert "10.00%" in message and "allowed 5.00%" in message
    report = lake.read_json(names.validation_path(AS_OF))
    assert report["status"] == "failed"
    assert set(report["failed_checks"]) == {"plots.missing_county", "plots.rejected_share"}
    rejected = lake.read_parquet(names.rejected_path(AS_OF)).to_pylist()
    assert [(r["plot_id"], r["reason"]) for r in rejected] == [(0, "missing_county")]
    assert not lake.exists(names.features_path(AS_OF))


def test_below_the_threshold_bad_rows_are_quarantined_and_the_run_passes(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.2")
    reset_settings()
    write_raw(lake, ten_plots(bad=1))
    result = materialize(AS_OF, lake=lake)
    assert (result.rows, result.rejected) == (9, 1)


def test_a_rerun_replaces_exactly_its_partition(lake: Lake) -> None:
    write_raw(lake, ten_plots())
    materialize(AS_OF, lake=lake)
    other_day = AS_OF - dt.timedelta(days=1)
    materialize(other_day, lake=lake)
    other = {p: lake.read_bytes(p) for p in lake.list(f"features/{other_day}")}
    lake.write_bytes(f"features/{AS_OF}/old-output.parquet", b"stale")

    inputs = ten_plots()
    fewer = inputs.plots[inputs.plots["plot_id"] != 5]
    write_raw(lake, RawInputs(fewer, inputs.cells, inputs.weather, inputs.ndvi))
    materialize(AS_OF, lake=lake)

    assert lake.list(f"features/{AS_OF}") == [
        names.features_path(AS_OF),
        names.rejected_path(AS_OF),
        names.validation_path(AS_OF),
    ]
    assert 5 not in lake.read_parquet(names.features_path(AS_OF))["plot_id"].to_pylist()
    assert {p: lake.read_bytes(p) for p in lake.list(f"features/{other_day}")} == other


@pytest.mark.parametrize(
    ("table", "checks"),
    [("plots", plot_checks()), ("weather", WEATHER_CHECKS), ("ndvi", NDVI_CHECKS)],
)
def test_masks_and_great_expectations_count_the_same_rows(table: str, checks: list[Check]) -> None:
    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame(
        {
            "plot_id": rng.integers(0, 150, n).astype(float),
            "cell_id": rng.integers(0, 150, n).astype(float),
            "season": rng.choice(["Long Rains", "Short Rains", "Masika"], n),
            "season_year": rng.integers(2024, 2026, n).astype(float),
            "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
            "planting_date": pd.Timestamp("2025-03-01"),
            "county": "Kisumu",
            **{
                name: rng.uniform(low, high, n)
                for name, low, high in [
                    ("latitude", -100, 100),
                    ("longitude", -200, 200),
                    ("altitude", -900, 7000),
                    ("days_outside_season", -1, 2),
                    ("weather_cell_distance_km", 0, 80),
                    ("precip_mm", -5, 600),
                    ("tmin_c", -40, 40),
                    ("tmax_c", 0, 70),
                    ("ndvi", -1.5, 1.5),
                    ("cloud_fraction", -0.2, 1.2),
                ]
            },
        }
    )
    frame["days_outside_season"] = frame["days_outside_season"].round()
    for column in frame.columns:  # sprinkle missing values everywhere
        frame.loc[rng.random(n) < 0.05, column] = None
    results = run_suite(table, frame, checks, threshold=0.05)
    assert [r.check for r in results] == [c.name for c in checks]
    for check, result in zip(checks, results, strict=True):
        in_scope = n
        if check.unless_above is not None:  # exempt rows (cloudy NDVI) are out of its scope
            in_scope -= int((frame[check.columns[1]] > check.unless_above).sum())
        assert result.element_count == in_scope, check.name
        assert result.unexpected_count == int(check.failing(frame).sum()), check.name
    assert any(r.unexpected_count for r in results)


def test_cli_features_prints_one_line_and_fails_with_one_line(
    lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    write_raw(lake, ten_plots())
    main(["features", "--date", AS_OF.isoformat()])
    assert capsys.readouterr().out.startswith(f"{AS_OF}: 10 plot-seasons, 0 rejected;")

    write_raw(lake, ten_plots(bad=4))
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "--date", AS_OF.isoformat()])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: validation failed: plots.") and "\n" not in error


def test_a_date_with_nothing_in_progress_writes_an_empty_partition(lake: Lake) -> None:
    write_raw(lake, ten_plots())
    day = dt.date(2025, 1, 15)  # before any planting of the Long Rains 2025
    result = materialize(day, lake=lake)
    assert (result.rows, result.rejected) == (0, 0)
    features = lake.read_parquet(names.features_path(day))
    assert features.num_rows == 0 and features.column_names == OUTPUT_SCHEMA.names
    assert lake.read_json(names.validation_path(day))["status"] == "passed"
