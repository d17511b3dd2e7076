"""How the season is going, in words: a county's rain, heat, dry spells and greenness to date
against its normal to date.

A dry season is news, not a model fault. When tonight's weather or NDVI is far from the
crop-calendar-aware reference (:mod:`.reference`: the same county's plot-seasons of the
previous years, planted in the same week and seen on the same calendar day), drift
monitoring reports a *season signal* for the bulletin — "rain 40% below the county's normal
to date" — and does not retrain (:mod:`.drift`). That reference is the county's **normal to
date**: :func:`compare_to_normal` sets tonight's season-to-date features beside it, per
county and season kind, and :func:`phrases` says it in words. Both are pure: the county
bulletin calls them as the drift report does (the normal comes from
:func:`nuru_yield.monitoring.monitor.normal_to_date`).

Planting date and days after planting are not compared: the reference is matched on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# The features behind each phrase, and the one each phrase quotes (the first).
FAMILIES: dict[str, tuple[str, ...]] = {
    "rain": ("precip_total", "precip_last_30d", "rainy_days"),
    "heat": ("tmax_mean", "gdd_sum", "heat_days"),
    "dry spells": ("max_dry_spell_days",),
    "vegetation": ("mean_ndvi", "max_ndvi", "ndvi_auc", "ndvi_slope_30d"),
}
GROUP = ["county", "season"]


@dataclass(frozen=True)
class Quoted:
    """A column pair of :func:`compare_to_normal`: tonight's mean and the normal's."""

    feature: str
    current: str
    normal: str


QUOTED = {
    "rain": Quoted("precip_total", "rain_mm", "normal_rain_mm"),
    "heat": Quoted("tmax_mean", "tmax_c", "normal_tmax_c"),
    "dry spells": Quoted("max_dry_spell_days", "dry_spell_days", "normal_dry_spell_days"),
    "vegetation": Quoted("mean_ndvi", "ndvi", "normal_ndvi"),
}
# Departures this small are "near normal" in words (the numbers stay in the table).
NEAR = {"rain": 10.0, "heat": 0.5, "dry spells": 2.0, "vegetation": 0.03}  # %, °C, days, NDVI
# Below this many millimetres of normal rain to date, a percentage says little: millimetres.
MIN_NORMAL_RAIN_MM = 5.0


def family_of(feature: str) -> str | None:
    """The phrase family (``rain``, ``heat``, ``dry spells``, ``vegetation``) of a feature."""
    return next((name for name, members in FAMILIES.items() if feature in members), None)


def compare_to_normal(
    current: pd.DataFrame, normal: pd.DataFrame, overall: bool = True
) -> pd.DataFrame:
    """Tonight's season to date beside the normal to date, one row per county × season kind
    of ``current`` (and, with ``overall``, one over all plots per season kind, ``county``
    null), ordered by season and county.

    ``current``: tonight's feature rows (the prediction log or the features partition);
    ``normal``: the matched reference of those rows. Both need ``county``, ``season`` and the
    quoted features. Columns: ``county``, ``season``, ``n_plots``, ``n_normal`` (reference
    plot-seasons), the means ``rain_mm``/``normal_rain_mm`` (season-to-date rain),
    ``rain_pct_of_normal``, ``tmax_c``/``normal_tmax_c`` and ``tmax_departure_c`` (mean
    daily maximum), ``dry_spell_days``/``normal_dry_spell_days`` (longest dry spell),
    ``ndvi``/``normal_ndvi`` and ``ndvi_departure`` (mean NDVI); NaN where a side has no
    value (a county without history has ``n_normal`` 0)."""
    features = [quoted.feature for quoted in QUOTED.values()]

    def means(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
        frame = frame.reindex(columns=[*GROUP, *features])
        values = frame[features].apply(pd.to_numeric, errors="coerce").astype(np.float64)
        keyed = pd.concat([frame[GROUP].astype(object), values], axis=1)
        parts = [keyed]
        if overall:
            parts.append(keyed.assign(county=None))
        stacked = pd.concat(parts, ignore_index=True)
        stacked["county"] = stacked["county"].fillna("")  # groupby drops null keys
        grouped = stacked.groupby(GROUP, sort=False)
        table = grouped[features].mean().add_prefix(prefix)
        return table.assign(**{f"{prefix}n": grouped.size()})

    tonight, normal_means = means(current, "c_"), means(normal, "r_")
    joined = tonight.join(normal_means, how="left").reset_index()
    out = pd.DataFrame(
        {
            "county": pd.Series(
                [None if county == "" else county for county in joined["county"]], dtype=object
            ),
            "season": joined["season"],
            "n_plots": joined["c_n"].astype(np.int64),
            "n_normal": joined["r_n"].fillna(0).astype(np.int64),
        }
    )
    for quoted in QUOTED.values():
        out[quoted.current] = joined[f"c_{quoted.feature}"]
        out[quoted.normal] = joined[f"r_{quoted.feature}"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rain_pct_of_normal"] = np.where(
            out["normal_rain_mm"] > 0, 100.0 * out["rain_mm"] / out["normal_rain_mm"], np.nan
        )
    out["tmax_departure_c"] = out["tmax_c"] - out["normal_tmax_c"]
    out["ndvi_departure"] = out["ndvi"] - out["normal_ndvi"]
    order = out["county"].isna().map({True: 0, False: 1})
    return (
        out.assign(_order=order)
        .sort_values(["season", "_order", "county"], na_position="first")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def phrase(family: str, row: Any) -> str | None:
    """One family's departure in words (``row``: a row of :func:`compare_to_normal`, as a
    mapping or named tuple), or None when either side has no value."""
    quoted = QUOTED[family]
    current, normal = _get(row, quoted.current), _get(row, quoted.normal)
    if not (np.isfinite(current) and np.isfinite(normal)):
        return None
    near = NEAR[family]
    if family == "rain":
        if normal < MIN_NORMAL_RAIN_MM:
            return f"rain {current:.0f} mm to date against a normal of {normal:.0f} mm"
        percent = 100.0 * current / normal - 100.0
        if abs(percent) < near:
            return f"rain near the county's normal to date ({current / normal:.0%})"
        side = "below" if percent < 0 else "above"
        return f"rain {abs(percent):.0f}% {side} the county's normal to date"
    if family == "heat":
        difference = current - normal
        if abs(difference) < near:
            return "temperatures near the county's normal to date"
        side = "hotter" if difference > 0 else "cooler"
        return f"days {abs(difference):.1f} °C {side} than the county's normal to date"
    if family == "dry spells":
        if abs(current - normal) < near:
            return f"longest dry spell as usual ({current:.0f} days)"
        return f"longest dry spell {current:.0f} days against {normal:.0f} normally"
    difference = current - normal
    if abs(difference) < near:
        return "vegetation (NDVI) near the county's normal to date"
    side = "below" if difference < 0 else "above"
    return (
        f"vegetation (NDVI {current:.2f}) {abs(difference):.2f} {side} the county's normal to date"
    )


def phrases(row: Any, families: Sequence[str] = tuple(QUOTED)) -> list[str]:
    """The departures of ``families`` in words, in that order (families without values
    left out)."""
    found = (phrase(family, row) for family in families)
    return [text for text in found if text is not None]


def _get(row: Any, name: str) -> float:
    value = row[name] if isinstance(row, dict | pd.Series) else getattr(row, name)
    return float(value) if value is not None and not pd.isna(value) else float("nan")
