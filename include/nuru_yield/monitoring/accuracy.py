"""Realized accuracy: forecasts scored against the harvest labels that arrived later.

Pure functions over frames. Errors are reduced to additive sums per group (season ×
season year × model × version × lead time) so that prediction logs can be streamed one
run date at a time and combined; :func:`finalize` turns the sums into RMSE, MAE, bias
(forecast − actual: positive means over-forecast), the coverage of the prediction interval,
the means of forecast and harvest, and the RMSE of the county normal each forecast was
blended with (``normal_kg_per_ha`` of the prediction log; absent from logs written before
the blend, whose rows then carry no normal). Lead time is the lead-time band of the
forecast — the bands of the training evaluation (:mod:`nuru_yield.models.leads`), so
realized and evaluated accuracy compare like with like.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from nuru_yield.contract import YIELD_LABEL
from nuru_yield.features.columns import KEY_COLUMNS
from nuru_yield.models.leads import LEAD_BANDS, lead_band

GROUP_COLUMNS = ["season", "season_year", "model_name", "model_version", "lead_time_days"]
FORECAST_COLUMNS = [
    *KEY_COLUMNS,
    "model_name",
    "model_version",
    "days_after_planting",
    "predicted_yield_kg_per_ha",
    "yield_lower",
    "yield_upper",
]
NORMAL_COLUMN = "normal_kg_per_ha"  # in prediction logs written since the blend
LABEL_COLUMNS = [*KEY_COLUMNS, YIELD_LABEL]
PERFORMANCE_COLUMNS = [
    *GROUP_COLUMNS,
    "rmse",
    "mae",
    "bias",
    "coverage",
    "n",
    "too_few_labels",
    "normal_rmse",
    "mean_forecast",
    "mean_actual",
]
# A group with fewer labelled forecasts than this is flagged ``too_few_labels``: its
# metrics are reported, but too noisy to trust (or to alert on).
MIN_LABELS = 30
_SUMS = [
    "n",
    "error_sum",
    "abs_error_sum",
    "squared_error_sum",
    "n_interval",
    "covered",
    "forecast_sum",
    "actual_sum",
    "n_normal",
    "normal_squared_error_sum",
]


def error_sums(
    forecasts: pd.DataFrame, labels: pd.DataFrame, bands: Sequence[int] = LEAD_BANDS
) -> pd.DataFrame:
    """Additive error sums per group for the forecasts whose plot-season has a label;
    ``lead_time_days`` is the lower bound of the forecast's lead-time band."""
    columns = [*FORECAST_COLUMNS, *([NORMAL_COLUMN] if NORMAL_COLUMN in forecasts else [])]
    joined = forecasts[columns].merge(labels[LABEL_COLUMNS], on=KEY_COLUMNS, how="inner")
    actual = joined[YIELD_LABEL].to_numpy(np.float64)
    forecast = joined["predicted_yield_kg_per_ha"].to_numpy(np.float64)
    error = forecast - actual
    normal = (
        joined[NORMAL_COLUMN].to_numpy(np.float64, na_value=np.nan)
        if NORMAL_COLUMN in joined
        else np.full(len(joined), np.nan)
    )
    has_normal = ~np.isnan(normal)
    lower = joined["yield_lower"].to_numpy(np.float64, na_value=np.nan)
    upper = joined["yield_upper"].to_numpy(np.float64, na_value=np.nan)
    has_interval = ~(np.isnan(lower) | np.isnan(upper))
    frame = joined[GROUP_COLUMNS[:-1]].assign(
        lead_time_days=lead_band(joined["days_after_planting"].to_numpy(np.float64), bands),
        n=1,
        error_sum=error,
        abs_error_sum=np.abs(error),
        squared_error_sum=error**2,
        n_interval=has_interval.astype(np.int64),
        covered=(has_interval & (actual >= lower) & (actual <= upper)).astype(np.int64),
        forecast_sum=forecast,
        actual_sum=actual,
        n_normal=has_normal.astype(np.int64),
        normal_squared_error_sum=np.where(has_normal, (normal - actual) ** 2, 0.0),
    )
    return frame.groupby(GROUP_COLUMNS, as_index=False, observed=True)[_SUMS].sum()


def combine(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add up the sums of several :func:`error_sums` results (e.g. one per run date)."""
    frames = [part for part in parts if not part.empty]
    if not frames:
        return pd.DataFrame(columns=GROUP_COLUMNS + _SUMS)
    return pd.concat(frames).groupby(GROUP_COLUMNS, as_index=False, observed=True)[_SUMS].sum()


def finalize(sums: pd.DataFrame) -> pd.DataFrame:
    """RMSE, MAE, bias, coverage (NaN without intervals), n, the ``too_few_labels`` flag
    (n below :data:`MIN_LABELS`), the county normal's RMSE over the forecasts that carry
    one (NaN where none does) and the means of forecast and harvest, per group."""
    n = sums["n"].to_numpy(np.float64)
    n_interval = sums["n_interval"].to_numpy(np.float64)
    n_normal = sums["n_normal"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(n_interval > 0, sums["covered"] / n_interval, np.nan)
        normal_rmse = np.where(
            n_normal > 0, np.sqrt(sums["normal_squared_error_sum"] / n_normal), np.nan
        )
    return sums[GROUP_COLUMNS].assign(
        rmse=np.sqrt(sums["squared_error_sum"] / n),
        mae=sums["abs_error_sum"] / n,
        bias=sums["error_sum"] / n,
        coverage=coverage,
        n=sums["n"].astype(np.int64),
        too_few_labels=n < MIN_LABELS,
        normal_rmse=normal_rmse,
        mean_forecast=sums["forecast_sum"] / n,
        mean_actual=sums["actual_sum"] / n,
    )


def realized_accuracy(
    forecasts: pd.DataFrame, labels: pd.DataFrame, bands: Sequence[int] = LEAD_BANDS
) -> pd.DataFrame:
    """:func:`finalize` of :func:`error_sums` for one frame of forecasts."""
    return finalize(error_sums(forecasts, labels, bands))


def fresh_rows(
    performance: pd.DataFrame, before: pd.DataFrame, reported: pd.DataFrame
) -> pd.DataFrame:
    """Rows of ``performance`` that are new, or whose forecast count ``n`` changed, against
    ``before`` (the table before this run) — labels arrived — plus rows an earlier run for
    the same date already reported as fresh with the same ``n``, so that a rerun of a date
    reproduces its alert. ``before`` and ``reported`` need the group columns and ``n``."""
    keys = [*GROUP_COLUMNS, "n"]

    def matching(other: pd.DataFrame) -> np.ndarray:
        if other.empty:
            return np.zeros(len(performance), dtype=bool)
        other = other[keys].astype({"season_year": "int64", "lead_time_days": "int64"})
        other = other.astype({"model_version": str, "n": "int64"}).assign(_hit=True)
        found = performance[keys].merge(other.drop_duplicates(keys), on=keys, how="left")
        return found["_hit"].fillna(False).to_numpy(bool)

    changed = ~matching(before)
    return performance[changed | matching(reported)].reset_index(drop=True)
