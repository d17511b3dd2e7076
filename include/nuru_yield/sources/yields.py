"""Harvest labels from a crop-cut survey CSV as field teams export it (docs/DESIGN.md,
"Real sources").

A crop cut weighs the fresh grain of a measured area and its moisture; the label is that
grain at the standard moisture ``YIELD_STANDARD_MOISTURE_PCT`` (12.5%), per hectare:

    yield_kg_per_ha = fresh_kg × (100 − moisture) / (100 − standard) × 10,000 / cut_area_m2

(the dry matter is kept, the water brought to the standard). A file that already carries
yields is accepted when its unit is stated in the column name (``yield_kg_per_ha``,
``yield_t_ha``, …) or by ``YIELDS_UNIT`` for a plain ``yield`` column. Rows with a problem
are quarantined with a reason: no plot id, an unknown season, a moisture outside
5–50% (0% or 100% is a data-entry error, not grain), a non-positive cut area, a negative
weight, a yield above 25 t/ha, a duplicate plot-season.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield.contract import YIELDS_SCHEMA
from nuru_yield.errors import DataValidationError
from nuru_yield.sources.plots import SEASONS, SPELLINGS
from nuru_yield.sources.tables import (
    REASON,
    SOURCE,
    Quarantine,
    find_column,
    integers,
    numbers,
    require_column,
)

PRODUCT = "yields"
MOISTURE_RANGE_PCT = (5.0, 50.0)  # maize grain at harvest is ~12–35%
MAX_YIELD_KG_PER_HA = 25_000.0
# (column, factor to kg) for the fresh grain weight of the cut.
WEIGHTS = {
    "fresh_weight_kg": 1.0, "grain_weight_kg": 1.0, "fresh_grain_weight_kg": 1.0,
    "fresh_weight": 1.0, "grain_weight": 1.0,
    "fresh_weight_g": 1e-3, "grain_weight_g": 1e-3, "fresh_grain_weight_g": 1e-3,
}  # fmt: skip
CUT_AREAS = ("cut_area_m2", "area_m2", "quadrat_area_m2", "harvested_area_m2", "cut_area")
MOISTURES = ("moisture_pct", "grain_moisture_pct", "grain_moisture", "moisture", "mc_pct", "mc")
# (column, factor to kg/ha) for files that carry yields.
YIELDS = {
    "yield_kg_per_ha": 1.0, "yield_kg_ha": 1.0, "yield_kgha": 1.0,
    "yield_t_per_ha": 1e3, "yield_t_ha": 1e3, "yield_tha": 1e3, "yield_tonnes_per_ha": 1e3,
}  # fmt: skip
UNITS = {"kg/ha": 1.0, "t/ha": 1e3}


def read_yields(
    files: Sequence[tuple[pd.DataFrame, str]],
    *,
    standard_moisture_pct: float,
    unit: str = "",
    mapping: dict[str, str] | None = None,
) -> tuple[pa.Table, pd.DataFrame, int]:
    """Labels of crop-cut CSVs' rows (:func:`~.tables.read_csv`; with the file's name for
    messages): (contract table, quarantined rows with reason and file, rows read). Pure."""
    mapping = mapping or {}
    frames = []
    for given, name in files:
        frame = given.copy()
        frame[SOURCE] = name
        frames.append(_labels(frame, name, standard_moisture_pct, unit, mapping))
    rows = pd.concat(frames, ignore_index=True)
    quarantine = Quarantine(rows.index)
    quarantine.add(rows["_problem"].notna(), rows["_problem"])
    key = ["plot_id", "season_year", "season"]
    quarantine.add(
        rows.duplicated(key, keep=False) & ~quarantine.bad,
        "duplicate plot-season " + rows["plot_id"].astype(str),
    )
    bad = quarantine.bad
    rejected = rows[bad].drop(columns=["_problem"]).copy()
    rejected[REASON] = quarantine.reason[bad]
    good = rows[~bad].sort_values(key, kind="stable")
    table = pa.Table.from_pandas(
        good[YIELDS_SCHEMA.names], schema=YIELDS_SCHEMA, preserve_index=False
    )
    return table, rejected, len(rows)


def _labels(
    frame: pd.DataFrame, name: str, standard: float, unit: str, mapping: dict[str, str]
) -> pd.DataFrame:
    problem = Quarantine(frame.index)
    ident = require_column(frame, "plot_id", SPELLINGS["plot_id"], mapping, name)
    frame["plot_id"], wrong = integers(frame[ident])
    problem.add(wrong | frame["plot_id"].isna(), "plot id is not a whole number")
    season = require_column(frame, "season", SPELLINGS["season"], mapping, name)
    given = frame[season].astype("string")
    frame["season"] = given.map(
        lambda s: SEASONS.get("".join(ch for ch in str(s).lower() if ch.isalnum()))
        if pd.notna(s) else None
    )  # fmt: skip
    problem.add(frame["season"].isna(), "unknown season " + given.fillna("").map(repr))
    year = require_column(frame, "season_year", SPELLINGS["season_year"], mapping, name)
    frame["season_year"], wrong = integers(frame[year])
    problem.add(wrong | frame["season_year"].isna(), "season year is not a whole number")
    frame["yield_kg_per_ha"] = _yield(frame, name, standard, unit, mapping, problem)
    frame["_problem"] = problem.reason
    return frame


def _yield(
    frame: pd.DataFrame,
    name: str,
    standard: float,
    unit: str,
    mapping: dict[str, str],
    problem: Quarantine,
) -> pd.Series:
    """kg/ha at the standard moisture: from a stated yield, else from the crop cut."""
    for column, factor in YIELDS.items():
        found = find_column(frame, column, (), mapping, name)
        if found is not None:
            return _stated(frame[found], factor, problem)
    plain = find_column(frame, "yield", (), mapping, name)
    if plain is not None:
        if unit not in UNITS:
            raise DataValidationError(
                f"{name}: column {plain!r} states no unit: name it yield_kg_per_ha or "
                "yield_t_ha, or set YIELDS_UNIT to kg/ha or t/ha"
            )
        return _stated(frame[plain], UNITS[unit], problem)
    weight = next(
        ((found, f) for c, f in WEIGHTS.items() if (found := find_column(frame, c, (), {}, name))),
        None,
    )
    if weight is None:
        raise DataValidationError(
            f"{name}: neither a yield column ({', '.join(YIELDS)}, or yield with YIELDS_UNIT) "
            f"nor a crop cut's fresh grain weight ({', '.join(WEIGHTS)})"
        )
    area = require_column(frame, "cut_area_m2", CUT_AREAS, mapping, name)
    moisture = require_column(frame, "moisture_pct", MOISTURES, mapping, name)
    fresh, wrong_fresh = numbers(frame[weight[0]])
    cut, wrong_cut = numbers(frame[area])
    wet, wrong_wet = numbers(frame[moisture])
    problem.add(wrong_fresh | fresh.isna() | (fresh < 0), "fresh grain weight missing or negative")
    problem.add(wrong_cut | cut.isna() | (cut <= 0), "cut area missing or not positive")
    low, high = MOISTURE_RANGE_PCT
    problem.add(
        wrong_wet | wet.isna() | (wet < low) | (wet > high),
        "grain moisture " + frame[moisture].fillna("").astype(str) + f"% outside {low:g}–{high:g}%",
    )
    kg = fresh * weight[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = kg * (100.0 - wet) / (100.0 - standard) * 10_000.0 / cut
    return _plausible(value, problem)


def _stated(values: pd.Series, factor: float, problem: Quarantine) -> pd.Series:
    converted, wrong = numbers(values)
    problem.add(wrong | converted.isna(), "yield is not a number")
    return _plausible(converted * factor, problem)


def _plausible(value: pd.Series, problem: Quarantine) -> pd.Series:
    problem.add(value < 0, "negative yield")
    problem.add(value > MAX_YIELD_KG_PER_HA, f"yield above {MAX_YIELD_KG_PER_HA:,.0f} kg/ha")
    return value.round(1)
