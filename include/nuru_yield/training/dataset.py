"""The labelled training set and its temporal split (never a random one).

Rows come from the feature functions (one row per plot-season × days-after-planting
cut-off) joined to the harvest labels. The scorer forecasts every night of a season, so
training cuts each plot-season at one day drawn inside every lead-time band
(:data:`~nuru_yield.models.leads.LEAD_BANDS`: 0–15, 15–30, … days after planting): the
model learns what nine days of rain mean as well as what ninety do, and every band has
rows to calibrate and judge it on. (Cut-offs at 30/60/90/120 days and season end only
taught the trees that little rain means a drought: forecasts in the first month fell to a
fraction of the harvest.) The newest labelled season of each kind (Long Rains
and Short Rains) evaluates, so every county the champion forecasts is checked; the seasons
just before those calibrate the prediction intervals; all earlier seasons train the
hold-out fit. The model that is registered is then refitted on every labelled season.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.contract import YIELD_LABEL
from nuru_yield.errors import TrainingError
from nuru_yield.features.checks import Check, failing_any, reasons
from nuru_yield.features.columns import KEY_COLUMNS, SEASONS
from nuru_yield.features.compute import LeadDays, training_rows
from nuru_yield.features.raw import RawInputs
from nuru_yield.models.leads import LEAD_BANDS

TARGET = YIELD_LABEL
SEASON_ORDER = {name: order for order, name in enumerate(SEASONS)}  # Long Rains come first
CALIBRATION_SEASONS = 2
# Record maize plots reach ~12-15 t/ha; a smallholder label above this is a data error.
MAX_YIELD_KG_PER_HA = 20_000.0

LABEL_CHECKS = [
    Check("missing_yield", "not_null", (TARGET,)),
    Check("yield_out_of_range", "between", (TARGET,), low=0.0, high=MAX_YIELD_KG_PER_HA),
    Check("duplicate_label", "unique", tuple(KEY_COLUMNS)),
    *(Check(f"missing_{key}", "not_null", (key,)) for key in KEY_COLUMNS),
]


def split_labels(labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good labels, and the quarantined ones with a ``reason`` (see :data:`LABEL_CHECKS`)."""
    bad = failing_any(labels, LABEL_CHECKS)
    rejected = labels[bad].assign(reason=reasons(labels[bad], LABEL_CHECKS))
    return labels[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def lead_draws(season_max_days: int, bands: Sequence[int] = LEAD_BANDS) -> LeadDays:
    """Per plot-season, one day after planting drawn uniformly inside each lead-time band
    (the last band runs to ``season_max_days``). The draw is a hash of the plot-season's key
    and the band, not a random state: the same plot-season is cut at the same days in every
    run, whatever else the lake holds, so a training set is reproducible."""
    lower = np.asarray([band for band in bands if band <= season_max_days], dtype=np.uint64)
    upper = np.append(lower[1:], np.uint64(season_max_days + 1))

    def draw(plots: pd.DataFrame) -> np.ndarray:
        band = np.arange(len(lower), dtype=np.uint64)
        uniform = _uniform(_plot_season_key(plots)[:, None] * np.uint64(len(lower)) + band)
        width = (upper - lower).astype(np.float64)
        return (lower + np.floor(uniform * width).astype(np.uint64)).astype(np.int64)

    return draw


def sampled_rows(frame: pd.DataFrame, share: float) -> np.ndarray:
    """A reproducible ``share`` of ``frame``'s rows (a boolean mask): a row is kept when the
    hash of its plot-season key and its days after planting falls below ``share``. Rows of
    one plot-season at different lead times are near copies of the same harvest; a model
    fitted on half of them loses little and fits in half the time."""
    if share >= 1.0:
        return np.ones(len(frame), dtype=bool)
    days = frame["days_after_planting"].to_numpy(np.int64).astype(np.uint64)
    return _uniform(_plot_season_key(frame) * np.uint64(1024) + days) < share


def _plot_season_key(frame: pd.DataFrame) -> np.ndarray:
    """One integer per row for its plot-season (plot id, season year, season kind)."""
    with np.errstate(over="ignore"):
        return (
            frame["plot_id"].to_numpy(np.int64).astype(np.uint64) * np.uint64(4099)
            + frame["season_year"].to_numpy(np.int64).astype(np.uint64) * np.uint64(2)
            + (frame["season"] == SEASONS[1]).to_numpy(np.uint64)
        )


def _uniform(values: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) for each integer: the splitmix64 finaliser's well-mixed
    hash, its top 53 bits."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def labelled_training_rows(
    raw: RawInputs,
    labels: pd.DataFrame,
    run_date: dt.date,
    season_max_days: int,
    lead_days: Sequence[int | None] | LeadDays | None = None,
) -> pd.DataFrame:
    """Feature rows of every labelled plot-season that was over (planted at least
    ``season_max_days`` before) by ``run_date``, cut at ``lead_days`` (default: one draw
    per lead-time band, :func:`lead_draws`), with its label in :data:`TARGET`.

    The run-date bound keeps a rerun for a past date from learning seasons it could not
    have known, whatever labels the lake holds today.
    """
    plots = raw.plots
    over = (plots["planting_date"] + pd.Timedelta(days=season_max_days)) <= pd.Timestamp(run_date)
    labelled = plots[over.to_numpy(bool)].merge(labels[KEY_COLUMNS], on=KEY_COLUMNS)
    if labelled.empty:
        return pd.DataFrame()
    rows = training_rows(
        dataclasses.replace(raw, plots=labelled),
        lead_draws(season_max_days) if lead_days is None else lead_days,
        season_max_days=season_max_days,
    )
    return rows.merge(labels[[*KEY_COLUMNS, TARGET]], on=KEY_COLUMNS)


def season_rank(frame: pd.DataFrame) -> np.ndarray:
    """Chronological index of each row's season: Long Rains before Short Rains each year."""
    order = frame["season"].map(SEASON_ORDER)
    if order.isna().any():
        unknown = sorted(set(frame.loc[order.isna(), "season"].astype(str)))
        raise TrainingError(f"unknown season name(s) {unknown}; expected {list(SEASON_ORDER)}")
    return frame["season_year"].to_numpy(dtype=np.int64) * 2 + order.to_numpy(dtype=np.int64)


def season_label(rank: int) -> str:
    """``2024 Long Rains`` for a :func:`season_rank` value."""
    names = {index: name for name, index in SEASON_ORDER.items()}
    return f"{rank // 2} {names[rank % 2]}"


@dataclass(frozen=True)
class TemporalSplit:
    train: pd.DataFrame
    calibration: pd.DataFrame
    evaluation: pd.DataFrame
    labelled: pd.DataFrame
    """Every labelled row: what the registered model is refitted on."""

    def describe(self) -> dict[str, Any]:
        """Seasons and row counts of each part, logged with every candidate."""
        parts = {
            "train": self.train,
            "calibration": self.calibration,
            "eval": self.evaluation,
            "refit": self.labelled,
        }
        described: dict[str, Any] = {}
        for name, part in parts.items():
            described[f"{name}_seasons"] = ", ".join(seasons_of(part))
            described[f"{name}_rows"] = len(part)
        return described


def seasons_of(frame: pd.DataFrame) -> list[str]:
    """The seasons of ``frame``'s rows in order, as ``2024 Long Rains`` labels."""
    return [season_label(rank) for rank in sorted(set(season_rank(frame).tolist()))]


def temporal_split(
    frame: pd.DataFrame, calibration_seasons: int = CALIBRATION_SEASONS
) -> TemporalSplit:
    """Split labelled rows by season: the newest of each kind → evaluation; the
    ``calibration_seasons`` before the older of those → calibration (fewer when history is
    short); everything earlier → training. A season between the two evaluated ones (a kind
    with no recent labels) is left out of the hold-out fit but kept in ``labelled``."""
    if frame.empty:
        raise TrainingError("no labelled rows: cannot train (are there harvest labels yet?)")
    rank = season_rank(frame)
    seasons = np.unique(rank)
    evaluated = sorted({int(seasons[seasons % 2 == kind].max()) for kind in set(seasons % 2)})
    earlier = seasons[seasons < evaluated[0]]
    if len(earlier) < 2:
        raise TrainingError(
            "need labels for at least 2 seasons before the evaluated "
            f"{' and '.join(season_label(r) for r in evaluated)} (one to train on, one to "
            f"calibrate the intervals on); found {', '.join(season_label(r) for r in seasons)}"
        )
    first_calibration = earlier[-min(calibration_seasons, len(earlier) - 1)]
    return TemporalSplit(
        train=frame[rank < first_calibration].reset_index(drop=True),
        calibration=frame[(rank >= first_calibration) & (rank < evaluated[0])].reset_index(
            drop=True
        ),
        evaluation=frame[np.isin(rank, evaluated)].reset_index(drop=True),
        labelled=frame.reset_index(drop=True),
    )
