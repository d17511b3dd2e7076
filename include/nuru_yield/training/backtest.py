"""Backtesting model recipes: how each would have forecast seasons it never saw.

For a run date D, the training set of D (labelled plot-seasons over by D) is split as
training splits it. Each recipe — tree shape × monotone constraints — goes through the
production path (:func:`~nuru_yield.training.candidates.assess_candidates`): fitted on the
training seasons, calibrated on the calibration seasons, measured on the evaluation seasons
(what the gate sees), refitted on every labelled season as the registered champion is, and
that refit measured on the next season, whose labels arrived after D — the realized
accuracy a support team would have lived with. Per season and lead-time band (days after
planting at forecast, :mod:`nuru_yield.models.leads`): plot-seasons, mean forecast and mean
harvest, RMSE beside the county normal's on the same rows, and 80% coverage; and each
recipe's RMSE against the free one's: the cost of its constraints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.config import get_settings
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake
from nuru_yield.models.leads import LEAD_BANDS, band_label
from nuru_yield.models.loaded import ServingModel
from nuru_yield.names import RAW_YIELDS
from nuru_yield.training.candidates import (
    ENSEMBLE,
    MONOTONE_FEATURES,
    TrainingParams,
    assess_candidates,
)
from nuru_yield.training.dataset import (
    labelled_training_rows,
    season_rank,
    split_labels,
    temporal_split,
)
from nuru_yield.training.evaluation import evaluate, format_metric
from nuru_yield.training.pipeline import build_training_set

log = logging.getLogger(__name__)

# Rain directions an earlier release imposed (more rain never lowers a forecast): wrong where
# waterlogging lowers yields, kept here to measure what dropping them changed.
RAIN_MONOTONE = {"precip_total": 1, "precip_last_30d": 1, "rainy_days": 1}
RECIPES: dict[str, dict[str, Any]] = {
    "pairwise+dry": {"interactions": "pairwise"},
    "pairwise": {"interactions": "pairwise", "monotone": ()},
    "pairwise+rain+dry": {
        "interactions": "pairwise",
        "monotone": tuple({**RAIN_MONOTONE, **MONOTONE_FEATURES}.items()),
    },
    "free+dry": {"interactions": "free"},
    "free": {"interactions": "free", "monotone": ()},
    # The Tweedie variance power: 1.2 (the default) against larger ones.
    "pairwise+dry,p=1.5": {"interactions": "pairwise", "tweedie_variance_power": 1.5},
    "pairwise+dry,p=1.8": {"interactions": "pairwise", "tweedie_variance_power": 1.8},
}
REFERENCE_RECIPE = "free"


@dataclass(frozen=True)
class BacktestReport:
    run_date: dt.date
    rows: pd.DataFrame  # recipe, part, season, lead_time_days, n, mean forecast/actual,
    # rmse, normal_rmse, coverage, width

    def costs(self) -> pd.DataFrame:
        """Each recipe's RMSE over the free recipe's, per part and lead time (all seasons of
        the part pooled by their squared errors)."""
        pooled = self.rows.assign(sse=self.rows["rmse"] ** 2 * self.rows["n"])
        totals = pooled.groupby(["recipe", "part", "lead_time_days"], as_index=False)[
            ["sse", "n"]
        ].sum()
        totals["rmse"] = np.sqrt(totals["sse"] / totals["n"])
        reference = totals[totals["recipe"] == REFERENCE_RECIPE].set_index(
            ["part", "lead_time_days"]
        )["rmse"]
        keys = pd.MultiIndex.from_frame(totals[["part", "lead_time_days"]])
        totals["cost"] = totals["rmse"].to_numpy() / reference.reindex(keys).to_numpy() - 1
        return totals.drop(columns="sse")

    def render(self) -> str:
        """Per recipe, season and lead-time band: mean forecast and harvest, RMSE beside the
        county normal's (kg/ha, whole) and coverage (two decimals); then the cost table."""
        metrics = ("mean_forecast", "mean_actual", "rmse", "normal_rmse", "coverage", "width")
        rows = self.rows.assign(
            lead_time_days=self.rows["lead_time_days"].map(band_label),
            **{
                name: self.rows[name].map(lambda value, name=name: format_metric(name, value))
                for name in metrics
            },
        ).rename(columns={"lead_time_days": "days after planting"})
        lines = [
            f"backtest for {self.run_date.isoformat()}: by lead-time band (days after "
            "planting at forecast), the forecast's RMSE beside the county normal's (kg/ha) and "
            "80% interval coverage",
            rows.to_string(index=False),
        ]
        if REFERENCE_RECIPE not in set(self.rows["recipe"]):
            lines.append(
                f"RMSE cost against the {REFERENCE_RECIPE!r} recipe: not measured "
                f"(add --recipe {REFERENCE_RECIPE})"
            )
            return "\n".join(lines)
        table = self.costs().pivot_table(
            index=["part", "recipe"], columns="lead_time_days", values="cost", aggfunc="first"
        )
        lines += [
            f"RMSE cost against the {REFERENCE_RECIPE!r} recipe, by lead time:",
            table.map("{:+.1%}".format).to_string(),
        ]
        return "\n".join(lines)


def _next_season_rows(lake: Lake, labelled: pd.DataFrame, season_max_days: int) -> pd.DataFrame:
    """Feature rows, one cut-off in every lead-time band, of the season right after the
    newest one in ``labelled``, with their labels (empty when that season has no labels
    yet)."""
    labels, _ = split_labels(lake.read_parquet(RAW_YIELDS).to_pandas())
    newest = int(season_rank(labelled).max())
    ranks = season_rank(labels)
    following = labels[ranks == newest + 1]
    if following.empty:
        return pd.DataFrame()
    raw = load_raw(lake)
    return labelled_training_rows(raw, following, dt.date.max, season_max_days)


def _measure(recipe: str, part: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the report from an :func:`evaluate` result, per season and lead time."""
    rows = []
    for key, metrics in evaluation["season_dap"].items():
        season, lead_time = key.rsplit("/", 1)
        rows.append(
            {
                "recipe": recipe,
                "part": part,
                "season": season,
                "lead_time_days": int(lead_time),
                "n": int(metrics["n"]),
                "mean_forecast": metrics["mean_forecast"],
                "mean_actual": metrics["mean_actual"],
                "rmse": metrics["rmse"],
                "normal_rmse": metrics["normal_rmse"],
                "coverage": metrics["coverage"],
                "width": metrics["interval_width"],
            }
        )
    return rows


def backtest(
    run_date: dt.date,
    lake: Lake | None = None,
    recipes: Sequence[str] = tuple(RECIPES),
    params: TrainingParams | None = None,
) -> BacktestReport:
    """Measure every recipe of ``recipes`` (names of :data:`RECIPES`) as of ``run_date``."""
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    lake = lake or Lake.from_settings()
    settings = get_settings()
    params = params or TrainingParams()
    split = temporal_split(lake.read_parquet(build_training_set(run_date, lake).path).to_pandas())
    following = _next_season_rows(lake, split.labelled, settings.season_max_days)
    if following.empty:
        log.warning("no labels for the season after the training set: realized accuracy skipped")
    measured: list[dict[str, Any]] = []
    for recipe in recipes:
        log.info("backtest: recipe %s", recipe)
        recipe_params = dataclasses.replace(params, **RECIPES[recipe])
        ensemble = assess_candidates(split, FEATURE_COLUMNS, recipe_params, LEAD_BANDS)[ENSEMBLE]
        measured += _measure(recipe, "hold-out (gate)", ensemble.evaluation)
        if not following.empty:
            refit = ServingModel(
                ensemble.refit,
                tuple(FEATURE_COLUMNS),
                ensemble.intervals,
                blend=ensemble.refit_blend,
            )
            blended = refit.forecast(following)
            days = following["days_after_planting"].to_numpy()
            lower, upper = refit.interval(blended.forecast, days)
            realized = evaluate(
                following,
                blended.forecast,
                LEAD_BANDS,
                lower,
                upper,
                normal=ensemble.refit_blend.normal.predict(following),
            )
            measured += _measure(recipe, "next season (refit)", realized)
    return BacktestReport(run_date, pd.DataFrame(measured))
