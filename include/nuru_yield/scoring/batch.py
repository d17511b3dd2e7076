"""Scoring one record batch: pure functions from a features batch and a loaded model to the
rows of ``predictions`` and of the prediction log. No I/O here (Kedro style).

Everything is vectorized over the batch: the feature matrix is built column by column from
Arrow buffers, the models run their native predict and TreeSHAP paths on that float64
matrix, and the ``top_drivers`` JSON is assembled with Arrow string kernels instead of a
Python loop per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nuru_yield.db.loader import PREDICTION_ARROW_SCHEMA
from nuru_yield.errors import ForecastIntegrityError
from nuru_yield.features.columns import FEATURE_COLUMNS, STATIC_FEATURES

if TYPE_CHECKING:
    from nuru_yield.models.loaded import ServingModel

TOP_DRIVERS = 3

# The prediction log (docs/DESIGN.md, "Lake layout"): the rows of `predictions` and the
# features they used, under their own names (`days_after_planting` is a column of both: the row's whole days).
SNAPSHOT_COLUMNS = [name for name in FEATURE_COLUMNS if name not in PREDICTION_ARROW_SCHEMA.names]
LOG_SCHEMA = pa.schema(
    [*PREDICTION_ARROW_SCHEMA, *(pa.field(name, pa.float64()) for name in SNAPSHOT_COLUMNS)]
)


@dataclass(frozen=True)
class RunStamp:
    """What every row of one run carries besides its forecast."""

    run_date: dt.date
    run_id: str
    scored_at: dt.datetime


def feature_matrix(batch: pa.RecordBatch, columns: Sequence[str]) -> np.ndarray:
    """The float64 matrix of ``columns`` (row-major, what the native predictors want);
    nulls become NaN, which the tree models route as missing."""
    matrix = np.empty((batch.num_rows, len(columns)), dtype=np.float64)
    for index, name in enumerate(columns):
        values = batch.column(name)
        if values.null_count:
            values = values.cast(pa.float64()).fill_null(np.nan)
        matrix[:, index] = values.to_numpy(zero_copy_only=False)
    return matrix


# Feature values in the drivers: enough for coordinates (~0.1 m), without the float noise of
# season sums (86.39999999999999 mm).
FEATURE_DECIMALS = 6


def _json_number(values: np.ndarray, decimals: int | None = None) -> pa.Array:
    """JSON text of each number; NaN and ±inf (not JSON) become ``null``."""
    array = pa.array(values if decimals is None else np.round(values, decimals))
    finite = pc.is_finite(array)
    return pc.if_else(finite, array.cast(pa.string()), pa.scalar("null"))


def drivers_json(
    contributions: np.ndarray,
    features: np.ndarray,
    names: Sequence[str],
    top: int = TOP_DRIVERS,
) -> pa.Array:
    """Per row, the ``top`` features with the largest absolute contribution, largest first:
    ``[{"feature": …, "value": …, "contribution": …}, …]`` as JSON text (contributions in
    kg/ha, signed: positive pushes the forecast up).

    ``contributions`` has one column per feature.
    """
    rows = np.arange(len(contributions))[:, None]
    strongest = np.argpartition(-np.abs(contributions), top - 1, axis=1)[:, :top]
    order = np.argsort(-np.abs(contributions[rows, strongest]), axis=1, kind="stable")
    strongest = strongest[rows, order]
    name_strings = pa.array(list(names), pa.string())
    parts: list[pa.Array | pa.Scalar] = []
    for rank in range(top):
        column = strongest[:, rank]
        parts += [
            pa.scalar('{"feature":"' if rank == 0 else ',{"feature":"'),
            name_strings.take(pa.array(column)),
            pa.scalar('","value":'),
            _json_number(features[rows[:, 0], column], FEATURE_DECIMALS),
            pa.scalar(',"contribution":'),
            _json_number(contributions[rows[:, 0], column], 1),
            pa.scalar("}"),
        ]
    return pc.binary_join_element_wise(pa.scalar("["), *parts, pa.scalar("]"), "")


def check_forecasts(
    predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray, model_label: str
) -> None:
    """Refuse forecasts a support team must never see: ``0 ≤ lower ≤ forecast ≤ upper``
    and finite on every row, else a :class:`ForecastIntegrityError` naming the counts (the
    models and intervals guarantee it by construction; this is the last line before
    anything is stored)."""
    with np.errstate(invalid="ignore"):
        problems = {
            "not finite": ~(np.isfinite(predicted) & np.isfinite(lower) & np.isfinite(upper)),
            "negative": (predicted < 0) | (lower < 0),
            "outside its interval": (predicted < lower) | (predicted > upper),
        }
    found = {name: int(np.count_nonzero(rows)) for name, rows in problems.items()}
    if any(found.values()):
        counts = ", ".join(f"{count:,} {name}" for name, count in found.items() if count)
        raise ForecastIntegrityError(
            f"{model_label} produced impossible forecasts (of {len(predicted):,} rows: "
            f"{counts}): nothing of this night is published"
        )


def score_batch(
    batch: pa.RecordBatch, model: ServingModel, model_name: str, stamp: RunStamp
) -> pa.RecordBatch:
    """The ``predictions`` rows (columns of ``PREDICTION_COLUMNS``) of one features batch
    scored by ``model`` under ``model_name`` (the alias: ``champion`` or ``challenger``).

    The forecast is the model's blended with the plot's county normal by lead-time band
    (``basis`` says which: ``model``, ``blended`` or ``normal``; ``normal_kg_per_ha`` is the
    normal); ``yield_lower``/``yield_upper`` are the calibrated interval of that forecast.
    The forecast is explained from the plot's own normal, ``plot_normal_kg_per_ha`` — the
    county normal adjusted for where the plot is (:meth:`Explanation.folded`) —, by what the
    season changes: ``top_drivers`` are the largest of those features' exact TreeSHAP
    contributions (one pass over the trees gives them and the forecasts), scaled by the
    model's share, and all of them add up to ``forecast − plot normal``. Raises
    :class:`ForecastIntegrityError` on any impossible forecast.
    """
    columns = list(model.feature_columns)
    features = feature_matrix(batch, columns)
    days = batch.column("days_after_planting").to_numpy(zero_copy_only=False)
    explained = model.explain(features)
    blended = model.blended(
        explained.forecast,
        batch.column("county").to_numpy(zero_copy_only=False),
        batch.column("season").to_numpy(zero_copy_only=False),
        days,
    )
    static = np.isin(columns, STATIC_FEATURES)
    explained = explained.around(blended).folded(static)
    predicted = explained.forecast
    lower, upper = model.interval(predicted, days)
    check_forecasts(predicted, lower, upper, f"{model_name} v{model.version}")
    season = np.flatnonzero(~static)
    drivers = drivers_json(
        explained.contributions[:, season], features[:, season], [columns[i] for i in season]
    )
    rows = batch.num_rows

    def constant(value: object, type_: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, type_), rows)

    values = {
        "run_date": constant(stamp.run_date, pa.date32()),
        "plot_id": batch.column("plot_id"),
        "season_year": batch.column("season_year"),
        "season": batch.column("season"),
        "model_name": constant(model_name, pa.string()),
        "model_version": constant(str(model.version), pa.string()),
        "county": batch.column("county"),
        "days_after_planting": pa.array(np.round(days)).cast(pa.int32()),
        "predicted_yield_kg_per_ha": pa.array(predicted),
        "yield_lower": pa.array(lower),
        "yield_upper": pa.array(upper),
        "interval_level": constant(model.intervals.level, pa.float64()),
        "top_drivers": drivers,
        "run_id": constant(stamp.run_id, pa.string()),
        "scored_at": constant(stamp.scored_at, pa.timestamp("us", tz="UTC")),
        "basis": pa.array(blended.basis, pa.string()),
        "normal_kg_per_ha": pa.array(blended.normal, from_pandas=True),
        "plot_normal_kg_per_ha": pa.array(explained.baseline),
    }
    return pa.RecordBatch.from_arrays(
        [values[field.name].cast(field.type) for field in PREDICTION_ARROW_SCHEMA],
        schema=PREDICTION_ARROW_SCHEMA,
    )


def log_batch(predictions: pa.RecordBatch, features: pa.RecordBatch) -> pa.RecordBatch:
    """A prediction log row: the ``predictions`` row plus the feature snapshot it was
    scored on (every column of :data:`FEATURE_COLUMNS`)."""
    return pa.RecordBatch.from_arrays(
        [*predictions.columns, *(features.column(name) for name in SNAPSHOT_COLUMNS)],
        schema=LOG_SCHEMA,
    )
