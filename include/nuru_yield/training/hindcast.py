"""The county hindcasts behind a model's skill (docs/DESIGN.md, "County bulletins").

:func:`county_skill` (``nuru-yield skill --date D``; ``nuru-yield train`` and the
``model_training`` DAG's ``county_skill`` task after a promotion) measures how good a
registered version's county forecasts have been at fixed points of the season:

1. the training set of D (the labelled plot-seasons' rows, one per lead-time band) and the
   same plot-seasons' features at exactly :data:`~nuru_yield.counties.skill.LEADS` days
   after planting;
2. for each labelled season, leaving it out: the version's recipe — each ensemble member
   cloned with its hyper-parameters and the rounds it grew
   (:func:`~nuru_yield.training.candidates.refit_like`) — fitted on the other seasons' rows
   (a reproducible :data:`HINDCAST_ROW_SHARE` of them), its blend toward the county normal
   kept with the normal of those seasons; its forecasts of the season left out, at each lead,
   aggregated to county figures as the nightly ones are;
3. each county figure beside the county's realized yield of the season, the naive mean and
   the trend of its other seasons (:mod:`nuru_yield.counties.skill`): MAPE, NRMSE, the
   county-level conformal factors, per county × season kind × lead → ``county_skill``
   (the version's rows replaced), and every hindcast → ``training/{D}/county_hindcasts.parquet``.

Only county-seasons with ``COUNTY_MIN_LABELS`` labelled plots count (the record's rule).
Not recomputed every night: the skill belongs to the version.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nuru_yield.config import get_settings
from nuru_yield.contract import PLOT_AREA
from nuru_yield.counties.figures import (
    COUNTY_SEASON,
    county_means,
    county_record,
    labelled_plot_seasons,
)
from nuru_yield.counties.skill import LEADS, SKILL_COLUMNS, baselines, skill_by_lead, skill_table
from nuru_yield.errors import MissingInputError
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake
from nuru_yield.models.loaded import load_model
from nuru_yield.models.normal import CountyNormal
from nuru_yield.models.registry import alias_version, mlflow_client, registry_errors
from nuru_yield.names import (
    CHAMPION,
    MODEL_NAME,
    RAW_PLOTS,
    RAW_YIELDS,
    county_hindcasts_path,
    training_set_path,
)
from nuru_yield.progress import track
from nuru_yield.steps import StepResult
from nuru_yield.training.candidates import refit_like
from nuru_yield.training.dataset import (
    TARGET,
    labelled_training_rows,
    sampled_rows,
    season_label,
    season_rank,
    split_labels,
)

if TYPE_CHECKING:
    from nuru_yield.config import Settings
    from nuru_yield.models.loaded import ServingModel

log = logging.getLogger(__name__)

# The share of the other seasons' training rows each hindcast refit learns from (the
# registered refit learns from half: a county figure averages hundreds of plots, and a
# quarter of the rows gave the same county skill in a quarter less time; docs/DESIGN.md,
# "Measurements").
HINDCAST_ROW_SHARE = 0.25


@dataclass(frozen=True)
class CountySkill(StepResult):
    """What :func:`county_skill` stored for a version: its rows, the seasons left out, the
    hindcasts' lake URI, the seconds of each phase and the skill per season kind × lead
    (:func:`~nuru_yield.counties.skill.skill_by_lead`)."""

    run_date: dt.date
    model_name: str
    model_version: str
    rows: int
    seasons: list[str]
    hindcasts_uri: str
    seconds: dict[str, float]
    by_lead: list[dict[str, Any]]

    def render(self) -> str:
        """The skill by lead time for people: the model's median NRMSE against the naive
        mean's and the trend's, and the counties where the model beats the mean."""
        lines = [
            f"county skill of {self.model_name} v{self.model_version}: hindcasts leaving out "
            f"each of {len(self.seasons)} seasons ({', '.join(self.seasons)}), "
            f"{self.rows} county × season × lead rows; {self.hindcasts_uri}",
            f"  {'season':<12} {'days':>5} {'counties':>9} {'MAPE':>6} {'NRMSE':>6} "
            f"{'mean':>6} {'trend':>6}  beats the mean",
        ]
        for row in self.by_lead:
            lines.append(
                f"  {row['season']:<12} {row['lead_days']:>5} {row['counties']:>9} "
                f"{row['skill_mape']:>5.0f}% {row['skill_nrmse']:>6.2f} {row['naive_nrmse']:>6.2f} "
                f"{_two(row['trend_nrmse']):>6}  {row['beats_naive']} of {row['counties']}"
            )
        if not self.by_lead:
            lines.append("  (no county with enough labelled seasons)")
        lines.append(
            "  seconds: "
            + ", ".join(f"{phase} {value:,.1f}" for phase, value in self.seconds.items())
        )
        return "\n".join(lines)


def _two(value: Any) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}"


def county_skill(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    version: str | None = None,
) -> CountySkill:
    """Hindcast the county forecasts of ``version`` (default: the ``@champion``) over the
    seasons labelled by D, store its ``county_skill`` (see the module docstring). Needs the
    training set of D (``nuru-yield train`` or ``build_training_set`` writes it)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    path = training_set_path(run_date)
    if not lake.exists(path):
        raise MissingInputError(
            f"no training set for {run_date}: {lake.uri(path)} not found "
            f"(`nuru-yield skill --date {run_date}` builds it; the training DAG has)"
        )
    # The database first, as scoring does: its schema made current (idempotent) before the
    # minutes of hindcasts, not found missing after them.
    from nuru_yield.db.migrations import upgrade

    upgrade(settings.predictions_db_url)
    version = version or _champion()
    with registry_errors(f"loading {MODEL_NAME} v{version}"):
        model = load_model(f"models:/{MODEL_NAME}/{version}")
    seconds: dict[str, float] = {}
    started = time.monotonic()
    training = lake.read_parquet(path).to_pandas()
    hindcast_rows, record = _hindcast_inputs(lake, run_date, settings)
    seconds["hindcast rows"] = time.monotonic() - started
    started = time.monotonic()
    hindcasts = hindcast(model, training, hindcast_rows, record)
    seconds["refits and forecasts"] = time.monotonic() - started
    started = time.monotonic()
    skill = skill_table(hindcasts)
    rows = _store(skill, run_date, version, settings)
    uri = lake.write_parquet(county_hindcasts_path(run_date), hindcasts)
    seconds["scores"] = time.monotonic() - started
    result = CountySkill(
        run_date=run_date,
        model_name=MODEL_NAME,
        model_version=str(version),
        rows=rows,
        seasons=[season_label(rank) for rank in sorted(set(season_rank(hindcasts).tolist()))]
        if len(hindcasts)
        else [],
        hindcasts_uri=uri,
        seconds={phase: round(value, 2) for phase, value in seconds.items()},
        by_lead=[
            {key: _plain(value) for key, value in row.items()}
            for row in skill_by_lead(skill).to_dict(orient="records")
        ],
    )
    log.info("%s", result.render())
    return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _champion() -> str:
    with registry_errors(f"resolving @{CHAMPION} of {MODEL_NAME}"):
        version = alias_version(mlflow_client(), MODEL_NAME, CHAMPION)
    if version is None:
        raise MissingInputError(f"{MODEL_NAME} has no @{CHAMPION}: no skill to measure")
    return version


def _hindcast_inputs(
    lake: Lake, run_date: dt.date, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled plot-seasons over by D cut at each hindcast lead (with their areas), and
    the counties' record of realized yields."""
    raw = load_raw(lake)
    good, _ = split_labels(lake.read_parquet(RAW_YIELDS).to_pandas())
    rows = labelled_training_rows(raw, good, run_date, settings.season_max_days, list(LEADS))
    plots = raw.plots
    if PLOT_AREA in lake.open_parquet(RAW_PLOTS).schema_arrow.names:
        keys = ["plot_id", "season_year", "season"]
        areas = lake.read_parquet(RAW_PLOTS, columns=[*keys, PLOT_AREA]).to_pandas()
        plots = plots.merge(areas.drop_duplicates(keys), on=keys, how="left")
        rows = rows.merge(areas.drop_duplicates(keys), on=keys, how="left")
    over = set(zip(rows["season"], rows["season_year"], strict=True))
    placed = labelled_plot_seasons(good, plots, TARGET)
    placed = placed[
        [key in over for key in zip(placed["season"], placed["season_year"], strict=True)]
    ]
    return rows, county_record(placed, TARGET, settings.county_min_labels)


def hindcast(
    model: ServingModel,
    training: pd.DataFrame,
    rows: pd.DataFrame,
    record: pd.DataFrame,
    row_share: float = HINDCAST_ROW_SHARE,
) -> pd.DataFrame:
    """Leave-one-season-out county hindcasts of ``model``'s recipe: one row per county ×
    season × season year × lead of ``record`` with ``forecast``, ``actual``, ``naive`` and
    ``trend`` (see the module docstring). ``training``: the training set's rows; ``rows``:
    the labelled plot-seasons at the hindcast leads (with ``area_ha`` when known)."""
    counted = baselines(record, TARGET).rename(columns={TARGET: "actual"})
    wanted = set(zip(counted["season"], counted["season_year"], strict=True))
    training_rank, rows_rank = season_rank(training), season_rank(rows)
    seasons = sorted(
        {
            rank
            for rank, key in zip(
                rows_rank, zip(rows["season"], rows["season_year"], strict=True), strict=True
            )
            if key in wanted
        }
    )
    columns = list(model.feature_columns)
    parts = []
    for rank in track(seasons, "county hindcasts: a refit per season left out"):
        others = training[training_rank != rank]
        others = others[sampled_rows(others, row_share)]
        refit = refit_like(
            model.estimator,
            others[columns].to_numpy(np.float64),
            others[TARGET].to_numpy(np.float64),
            phase=f"hindcast of {season_label(rank)}",
        )
        left_out = rows[rows_rank == rank]
        forecast = refit.ensemble.predict(left_out[columns].to_numpy(np.float64))
        if model.blend is not None:
            blend = model.blend.with_normal(CountyNormal.fit(others))
            forecast = blend.apply(
                forecast,
                left_out["county"].to_numpy(),
                left_out["season"].to_numpy(),
                left_out["days_after_planting"].to_numpy(),
            ).forecast
        county = county_means(
            left_out.assign(forecast=forecast), "forecast", [*COUNTY_SEASON, "days_after_planting"]
        )
        parts.append(county.rename(columns={"days_after_planting": "lead_days"}))
    if not parts:
        return pd.DataFrame(
            columns=[*COUNTY_SEASON, "lead_days", "forecast", "n", "actual", "naive", "trend"]
        )
    forecasts = pd.concat(parts, ignore_index=True).astype({"lead_days": np.int64})
    merged = forecasts.merge(
        counted[[*COUNTY_SEASON, "actual", "naive", "trend"]], on=COUNTY_SEASON
    )
    return merged[[*COUNTY_SEASON, "lead_days", "n", "forecast", "actual", "naive", "trend"]]


def _store(skill: pd.DataFrame, run_date: dt.date, version: str, settings: Settings) -> int:
    """Replace the version's ``county_skill`` rows."""
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.loader import replace_rows
    from nuru_yield.db.schema import county_skill as table
    from nuru_yield.db.values import plain

    computed_at = dt.datetime.now(dt.UTC)  # audit stamp only
    records = [
        {**plain(record), "run_date": run_date, "computed_at": computed_at}
        for record in skill[SKILL_COLUMNS].to_dict(orient="records")
    ]
    match = {"model_name": MODEL_NAME, "model_version": str(version)}
    return replace_rows(get_engine(settings.predictions_db_url), table, match, records)
