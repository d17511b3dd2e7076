"""The validation gate: great-expectations 1.x suites on the inputs and the output.

GE reports; it does not stop anything (its Airflow provider no longer fails tasks on a
failed validation either). :func:`validate` turns the suites' results into a
:class:`ValidationReport`, and :meth:`ValidationReport.raise_on_failure` raises
:class:`~nuru_yield.errors.DataValidationError` naming the check and its numbers.

A check passes while its share of failing rows stays within its allowance: the configured
``VALIDATION_MAX_BAD_SHARE`` (default 5%) for inputs, zero for the output's keys and
ranges (a failure there is a bug, not bad data). As in GE, value checks count failures
among the non-missing values; missing values have checks of their own.

Two checks look at the night as a whole: ``plots.no_plot_seasons`` (the plots table holds
no plot-season of the season years that can run: an empty or stale ``raw/plots.parquet``)
and ``plot_features.weather_not_current`` (plot-seasons in progress whose weather cell has
no rain value in the last ``WEATHER_MAX_LAG_DAYS`` days before the run date: a stalled or
missing weather feed, which would otherwise shorten every window without a word). In a
sharded run the first is judged once, where the plots table is read for the whole night;
the second counts plot-seasons, so the shards' counts add up in :func:`combine`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.contract import CLEAR_MAX_CLOUD
from nuru_yield.errors import DataValidationError
from nuru_yield.features.checks import (
    CELL_CHECKS,
    NDVI_CHECKS,
    WEATHER_CHECKS,
    WEATHER_NOT_CURRENT,
    Check,
    failing_any,
    output_checks,
    plot_checks,
    weather_lag_days,
)

log = logging.getLogger(__name__)
# great-expectations logs some 200 lines at INFO while it is imported ("Skipping registering
# function …"), burying the run's own lines in the CLI's output and the Airflow task log. It
# is imported lazily (features preload it in a thread), so its level is set here, before.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

# Every considered plot-season either gets features or lands in rejected.parquet; this
# check bounds the share of the latter, whatever mix of reasons put them there.
REJECTED_SHARE = Check("rejected_share", "null", ("reason",))


@dataclass(frozen=True)
class CheckResult:
    """One expectation's outcome, as recorded in ``validation.json``."""

    table: str
    check: str
    expectation: str
    columns: list[str]
    element_count: int
    missing_count: int
    unexpected_count: int
    unexpected_percent: float
    """Of the rows checked: all rows, or the non-missing ones for value checks."""
    allowed_percent: float
    success: bool
    detail: str = ""
    """What the numbers mean for this check, when the row counts alone do not say it."""

    def describe(self) -> str:
        checked = self.element_count - self.missing_count
        counts = (
            f"{self.unexpected_count:,} of {checked:,} rows bad "
            f"({self.unexpected_percent:.2f}%), allowed {self.allowed_percent:.2f}%"
        )
        return f"{self.table}.{self.check}: {self.detail or counts}"


@dataclass
class ValidationReport:
    """Every check of one run plus the row counts of what was read, dropped and written."""

    threshold: float
    checks: list[CheckResult] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.checks if not result.success]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "passed" if self.passed else "failed",
            "threshold": self.threshold,
            "failed_checks": [f"{r.table}.{r.check}" for r in self.failures],
            "counts": self.counts,
            "checks": [asdict(result) for result in self.checks],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ValidationReport:
        """The report of :meth:`to_json` (e.g. a shard's, read back by the publish step)."""
        return cls(
            threshold=payload["threshold"],
            checks=[CheckResult(**result) for result in payload["checks"]],
            counts=payload["counts"],
        )

    def raise_on_failure(self) -> None:
        """Raise naming the worst failed check (and how many others failed)."""
        if self.passed:
            return
        worst = max(self.failures, key=lambda r: r.unexpected_percent - r.allowed_percent)
        others = len(self.failures) - 1
        more = f" (+{others} more failed check{'s' if others > 1 else ''})" if others else ""
        raise DataValidationError(f"validation failed: {worst.describe()}{more}")


def run_suite(
    table: str,
    frame: pd.DataFrame,
    checks: Sequence[Check],
    threshold: float,
    context: Any = None,
) -> list[CheckResult]:
    """Validate ``frame`` with GE expectations built from ``checks``; one result per check.

    One GE batch per set of columns, holding only those columns: GE copies a batch's
    non-missing rows for each expectation, so narrow batches save time and memory on
    tables of millions of observations. Every batch comes from the context's one batch
    definition (the frame is a batch parameter): GE rewrites its whole configuration each
    time a data source or asset is added, which grew quadratic with the batches of a run.
    """
    if frame.empty:  # GE cannot compute value metrics on no rows; nothing can be bad
        return [
            _result(table, check, _allowed(check, threshold), 0, 0, 0, 0.0, True)
            for check in checks
        ]
    gx = _great_expectations()
    context = context or _context()
    groups: dict[tuple[str, ...], list[Check]] = {}
    for check in checks:
        groups.setdefault(check.columns, []).append(check)
    outcomes: dict[str, Any] = {}
    for columns, group in groups.items():
        name = f"{table}.{'+'.join(columns)}"
        batch = context.get_batch(batch_parameters={"dataframe": frame[list(columns)]})
        suite = gx.ExpectationSuite(name=name)
        for check in group:
            suite.add_expectation(check.expectation(mostly=1.0 - _allowed(check, threshold)))
        for outcome in batch.validate(suite, result_format="BASIC").results:
            outcomes[outcome.expectation_config.meta["check"]] = outcome
    results = []
    for check in checks:
        outcome = outcomes[check.name]
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            message = outcome.exception_info.get("exception_message")
            raise DataValidationError(f"{table}.{check.name}: expectation errored: {message}")
        stats = outcome.result
        results.append(
            _result(
                table,
                check,
                _allowed(check, threshold),
                int(stats.get("element_count", len(frame))),
                int(stats.get("missing_count", 0)),
                int(stats.get("unexpected_count", 0)),
                float(stats.get("unexpected_percent") or 0.0),
                bool(outcome.success),
            )
        )
    return results


def _allowed(check: Check, threshold: float) -> float:
    return threshold if check.allowed_share is None else check.allowed_share


def validate(
    *,
    plots: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
    weather: pd.DataFrame | None = None,
    ndvi: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    threshold: float,
    season_max_days: int,
    max_cell_distance_km: float,
    run_date: dt.date,
    weather_max_lag_days: int,
    plot_seasons_read: int | None = None,
    features_weather: pd.DataFrame | None = None,
) -> ValidationReport:
    """Run the suite of each table given: considered plot-seasons (with ``reason``), cells,
    weather, NDVI, output. A sharded run validates the tables every shard shares (cells,
    weather) once and each shard its own slice of the others; :func:`combine` joins them.

    ``plot_seasons_read`` counts the rows of the plots table read for the night (the
    season years that can run; given by the step that reads the whole table, once per
    run), ``plots`` only those considered on ``run_date``. ``features_weather`` is the
    daily weather at the cells of ``features`` (given with them): how current each
    plot-season's weather is (``plot_features.weather_not_current``).
    """
    report = ValidationReport(threshold=threshold)
    context = _context()
    lag: np.ndarray | None = None
    latest_weather: np.datetime64 | None = None
    if features is not None:
        if features_weather is None:
            raise ValueError("features are validated with the weather at their cells")
        lag, latest_weather = weather_lag_days(
            features["weather_cell_id"].to_numpy(np.int64),
            features_weather,
            run_date,
            run_date - dt.timedelta(days=season_max_days),
        )
    suites: list[tuple[str, pd.DataFrame | None, list[Check]]] = [
        ("plots", plots, [*plot_checks(max_cell_distance_km), REJECTED_SHARE]),
        ("weather_cells", cells, CELL_CHECKS),
        ("weather", weather, WEATHER_CHECKS),
        (
            "plot_features",
            None if lag is None else pd.DataFrame({"weather_lag_days": lag}),
            [_weather_current(weather_max_lag_days)],
        ),
        ("ndvi", ndvi, NDVI_CHECKS),
        ("plot_features", features, output_checks(season_max_days)),
    ]
    for table, frame, checks in suites:
        if frame is not None:
            report.checks.extend(run_suite(table, frame, checks, threshold, context))
    if plot_seasons_read is not None:
        report.counts["plot_seasons_read"] = plot_seasons_read
        if plot_seasons_read == 0:
            report.checks.insert(0, _no_plot_seasons(run_date, season_max_days))
    if plots is not None:
        rejected = plots["reason"].dropna()
        report.counts |= {
            "plots_considered": len(plots),
            "plots_rejected": len(rejected),
            "rejected_by_reason": {
                reason: int(count)
                for reason, count in rejected.str.split(";").explode().value_counts().items()
            },
        }
    if features is not None and lag is not None:
        report.counts |= {
            "plot_features": len(features),
            "plot_features_without_clear_ndvi": int(features["ndvi_missing"].sum()),
            "weather_latest_date": None if latest_weather is None else str(latest_weather),
            "plot_features_without_current_weather": int(
                np.count_nonzero(lag > weather_max_lag_days)
            ),
        }
    if cells is not None:
        report.counts |= {
            "weather_cells": len(cells),
            "weather_cells_dropped": int(failing_any(cells, CELL_CHECKS).sum()),
        }
    if weather is not None:
        report.counts |= {
            "weather_rows": len(weather),
            "weather_rows_with_bad_values": int(failing_any(weather, WEATHER_CHECKS).sum()),
        }
    if ndvi is not None:
        cloud = ndvi["cloud_fraction"].to_numpy(np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            cloudy = int(np.count_nonzero(cloud > CLEAR_MAX_CLOUD))
        report.counts |= {
            "ndvi_rows": len(ndvi),
            "ndvi_rows_dropped": int(failing_any(ndvi, NDVI_CHECKS).sum()),
            "ndvi_rows_cloudy": cloudy,
        }
    _explain(report, run_date, season_max_days, weather_max_lag_days)
    return report


def combine(
    reports: Sequence[ValidationReport],
    *,
    run_date: dt.date,
    season_max_days: int,
    weather_max_lag_days: int,
) -> ValidationReport:
    """One report over disjoint parts of the input (the shards of a run, plus the tables
    they share, validated once): per check the counts are summed and the check is judged
    again on the totals, as great-expectations judges ``mostly`` (a check may fail over
    the whole run although no shard failed it, and the other way round); a check that
    counted no rows anywhere (``plots.no_plot_seasons``) keeps its parts' verdict. Row
    counts are summed key by key; dates (``weather_latest_date``) take the newest. The
    run's values (``validate``'s) explain the totals for a person again."""
    if not reports:
        raise ValueError("nothing to combine")
    threshold = reports[0].threshold
    merged: dict[tuple[str, str], list[CheckResult]] = {}
    for report in reports:
        if report.threshold != threshold:
            raise ValueError(f"cannot combine thresholds {threshold} and {report.threshold}")
        for result in report.checks:
            merged.setdefault((result.table, result.check), []).append(result)
    combined = ValidationReport(threshold=threshold)
    for parts in merged.values():
        first = parts[0]
        elements = sum(part.element_count for part in parts)
        missing = sum(part.missing_count for part in parts)
        unexpected = sum(part.unexpected_count for part in parts)
        checked = elements - missing
        combined.checks.append(
            replace(
                first,
                element_count=elements,
                missing_count=missing,
                unexpected_count=unexpected,
                unexpected_percent=unexpected / checked * 100
                if checked
                else max(part.unexpected_percent for part in parts),
                success=(checked - unexpected) / checked >= 1.0 - first.allowed_percent / 100
                if checked
                else all(part.success for part in parts),
                detail=first.detail if len(parts) == 1 else "",  # a part's numbers
            )
        )
    for report in reports:
        combined.counts = _add_counts(combined.counts, report.counts)
    _explain(combined, run_date, season_max_days, weather_max_lag_days)
    return combined


def _add_counts(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, dict):
            out[key] = _add_counts(out.get(key, {}), value)
        elif value is None or isinstance(value, str):  # an ISO date: the newest of the parts
            out[key] = max(filter(None, (out.get(key), value)), default=None)
        else:
            out[key] = out.get(key, 0) + value
    return out


def _weather_current(max_lag_days: int) -> Check:
    return replace(WEATHER_NOT_CURRENT, high=float(max_lag_days))


def _explain(
    report: ValidationReport, run_date: dt.date, season_max_days: int, max_lag_days: int
) -> None:
    """Give the checks whose row counts need it a detail for a person (from the report's
    totals), then log every failed check."""
    read_from = run_date - dt.timedelta(days=season_max_days)
    latest_weather = report.counts.get("weather_latest_date")
    report.checks = [
        _explained(result, run_date, read_from, latest_weather, max_lag_days)
        for result in report.checks
    ]
    for result in report.failures:
        log.warning("check failed: %s", result.describe())


def _explained(
    result: CheckResult,
    run_date: dt.date,
    read_from: dt.date,
    latest_weather: str | None,
    max_lag_days: int,
) -> CheckResult:
    """``result`` with a detail for a person, for the checks whose row counts need one."""
    if result.check != WEATHER_NOT_CURRENT.name or not result.unexpected_count:
        return result
    latest = (
        f"the newest at their weather cells is {latest_weather}"
        if latest_weather is not None
        else f"their weather cells have none since {read_from}"
    )
    return replace(
        result,
        detail=(
            f"{result.unexpected_count:,} of {result.element_count:,} plot-seasons in progress "
            f"({result.unexpected_percent:.2f}%, allowed {result.allowed_percent:.2f}%) have no "
            f"weather within {max_lag_days} day(s) of the run date {run_date} "
            f"(WEATHER_MAX_LAG_DAYS): {latest} — is the weather feed stalled?"
        ),
    )


def _no_plot_seasons(run_date: dt.date, season_max_days: int) -> CheckResult:
    """The plots table holds nothing for the night: an empty or stale ``raw/plots.parquet``."""
    read_from = run_date - dt.timedelta(days=season_max_days)
    years = f"{read_from.year - 1}–{run_date.year}"  # what the raw reader reads
    return CheckResult(
        table="plots",
        check="no_plot_seasons",
        expectation="expect_table_row_count_to_be_between",
        columns=[],
        element_count=0,
        missing_count=0,
        unexpected_count=0,
        unexpected_percent=100.0,
        allowed_percent=0.0,
        success=False,
        detail=f"raw/plots.parquet holds no plot-season of the season years {years}",
    )


def _result(
    table: str,
    check: Check,
    allowed_share: float,
    element_count: int,
    missing_count: int,
    unexpected_count: int,
    unexpected_percent: float,
    success: bool,
) -> CheckResult:
    expectation = check.expectation(mostly=1.0 - allowed_share)
    return CheckResult(
        table=table,
        check=check.name,
        expectation=expectation.expectation_type,
        columns=list(check.columns),
        element_count=element_count,
        missing_count=missing_count,
        unexpected_count=unexpected_count,
        unexpected_percent=unexpected_percent,
        allowed_percent=100.0 * allowed_share,
        success=success,
    )


def _great_expectations() -> Any:
    """The great_expectations module, with the logger that its import sets to INFO (a line
    per context: "Created temporary directory … for ephemeral docs site") quieted."""
    import great_expectations as gx

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


def _context() -> Any:
    """The batch definition of a throwaway in-memory GE context without progress bars."""
    gx = _great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GE fingerprints every pandas batch under 1 GB with an MD5 of all its values (twice
    # per batch): ~80% of its time on 15 M NDVI rows. Nothing here reads the fingerprint.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return (
        context.data_sources.add_pandas("nuru")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("frame")
    )
