"""Accuracy of a model on evaluation rows: overall, per season, county and lead-time band
(days after planting at forecast, :mod:`nuru_yield.models.leads`), per county and per lead
time within each season, with the coverage of its prediction intervals and, beside every
figure, the error of the county normal on the same rows. Pure functions over arrays/frames."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nuru_yield.models.leads import lead_band
from nuru_yield.training.dataset import TARGET, season_label, season_rank

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# MAPE is computed over plots that yielded at least this much: failed crops (near-zero
# yields, common in semi-arid Short Rains) would otherwise dominate it with huge ratios.
MAPE_FLOOR_KG_PER_HA = 100.0


def regression_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    normal: np.ndarray | None = None,
) -> dict[str, float]:
    """RMSE, MAE, R², MAPE (see ``MAPE_FLOOR_KG_PER_HA``), the mean forecast and the mean
    actual yield, n; coverage and mean interval width when bounds are given; the RMSE of
    the county normal (``normal_rmse``) when its forecasts are given. Undefined values (R²
    of a constant, MAPE of failed crops) are NaN."""
    actual = np.asarray(actual, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - actual
    total = float(np.sum((actual - actual.mean()) ** 2))
    positive = actual >= MAPE_FLOOR_KG_PER_HA
    metrics = {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
        "mape": float(np.mean(np.abs(error[positive]) / actual[positive]))
        if positive.any()
        else float("nan"),
        "mean_forecast": float(np.mean(predicted)),
        "mean_actual": float(np.mean(actual)),
        "n": float(len(actual)),
    }
    if normal is not None:
        metrics["normal_rmse"] = float(np.sqrt(np.mean((np.asarray(normal) - actual) ** 2)))
    if lower is not None and upper is not None:
        metrics["coverage"] = float(np.mean((actual >= lower) & (actual <= upper)))
        metrics["interval_width"] = float(np.mean(np.asarray(upper) - np.asarray(lower)))
    return metrics


GROUPS = ("season", "county", "dap", "season_county", "season_dap")


def evaluate(
    frame: pd.DataFrame,
    predicted: np.ndarray,
    bands: Sequence[int],
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    normal: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of ``predicted`` against ``frame[TARGET]``: ``{"overall": {...}, group:
    {key: {...}}}`` for the groups of :data:`GROUPS` — ``season`` keys are labels like
    ``2024 Short Rains``, ``dap`` keys the lower bounds of the lead-time ``bands``, and the
    ``season_county`` / ``season_dap`` keys join the two with ``/``. With ``normal`` (the
    county normal's forecasts of the same rows), every group also reports its RMSE."""
    actual = frame[TARGET].to_numpy(dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    season = np.array([season_label(rank) for rank in season_rank(frame)], dtype=object)
    county = frame["county"].astype(str).to_numpy()
    dap = lead_band(frame["days_after_planting"].to_numpy(), bands).astype(str)
    groups = {
        "season": season,
        "county": county,
        "dap": dap,
        "season_county": season + "/" + county,
        "season_dap": season + "/" + dap,
    }
    result: dict[str, Any] = {
        "overall": regression_metrics(actual, predicted, lower, upper, normal)
    }
    for name, keys in groups.items():
        result[name] = {}
        for key in sorted(set(keys.tolist()), key=natural_order):
            rows = keys == key
            result[name][key] = regression_metrics(
                actual[rows],
                predicted[rows],
                *(None if values is None else values[rows] for values in (lower, upper, normal)),
            )
    return result


# How metrics are shown to people: shares to two decimals, kg/ha (and counts) whole.
SHARE_METRICS = frozenset({"r2", "mape", "coverage"})


def format_metric(name: str, value: float | None) -> str:
    """``value`` of metric ``name`` as printed to people (``–`` when undefined)."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.2f}" if name in SHARE_METRICS else f"{value:,.0f}"


def natural_order(key: str) -> list[Any]:
    """Sort key that orders the numbers inside labels by value (lead time 30 before 120)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


_UNSAFE_METRIC_CHARS = re.compile(r"[^0-9A-Za-z_\-. /:]")


def flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """MLflow metric names: ``rmse``, ``county/<name>/rmse``, ``dap/<bucket>/coverage``,
    ``season_county/<season>/<county>/rmse``…; NaNs left out (MLflow charts skip them)."""
    flat = {key: value for key, value in evaluation["overall"].items()}
    for group in GROUPS:
        for key, metrics in evaluation.get(group, {}).items():
            safe = _UNSAFE_METRIC_CHARS.sub("_", key)
            flat.update({f"{group}/{safe}/{name}": value for name, value in metrics.items()})
    return {key: value for key, value in flat.items() if not np.isnan(value)}


def residuals_figure(
    frame: pd.DataFrame, predicted: np.ndarray, bands: Sequence[int], title: str
) -> Figure:
    """Residuals against predictions, and their spread per lead-time band."""
    from matplotlib.figure import Figure

    residual = frame[TARGET].to_numpy(dtype=np.float64) - np.asarray(predicted)
    bucket = lead_band(frame["days_after_planting"].to_numpy(), bands)
    sample = np.random.default_rng(0).permutation(len(residual))[:3000]

    # Fixed margins: automatic layout would draw the figure twice (slow, once per candidate).
    figure = Figure(figsize=(11, 4.5), dpi=80)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    scatter, boxes = figure.subplots(1, 2)
    scatter.scatter(np.asarray(predicted)[sample], residual[sample], s=4, alpha=0.3)
    scatter.axhline(0, color="black", linewidth=0.8)
    scatter.set(xlabel="predicted yield (kg/ha)", ylabel="actual − predicted (kg/ha)")
    labels = sorted(set(bucket.tolist()))
    boxes.boxplot([residual[bucket == b] for b in labels], showfliers=False)
    boxes.set_xticks(range(1, len(labels) + 1), [f"≥{b}" for b in labels])
    boxes.axhline(0, color="black", linewidth=0.8)
    boxes.set(xlabel="days after planting at forecast", ylabel="actual − predicted (kg/ha)")
    figure.suptitle(title)
    return figure
