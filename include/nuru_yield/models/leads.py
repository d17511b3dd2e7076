"""Lead-time bands: how far into its season a forecast was made (days after planting).

One definition serves every place that reports or calibrates by lead time — the training
set's draws, the conformal intervals, the blend toward the county normal, the evaluation the
gate reads, ``nuru-yield backtest`` and the realized accuracy of ``model_performance`` — so
their numbers compare like with like. The first two months are split finely because that
is where a forecast changes fastest (a crop nine days in the ground and one a month in are
different questions); after 60 days, 30-day bands. A band is named by its lower bound; the
last one runs to the end of the season.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEAD_BANDS: tuple[int, ...] = (0, 15, 30, 45, 60, 90, 120, 150)


def band_index(days_after_planting: np.ndarray, bands: Sequence[int] = LEAD_BANDS) -> np.ndarray:
    """The position in ``bands`` of each days-after-planting value's band; values before the
    first band fall in the first."""
    index = np.searchsorted(np.asarray(bands), np.asarray(days_after_planting), side="right")
    return np.clip(index - 1, 0, len(bands) - 1)


def lead_band(days_after_planting: np.ndarray, bands: Sequence[int] = LEAD_BANDS) -> np.ndarray:
    """The band (its lower bound, in days) of each days-after-planting value."""
    return np.asarray(bands)[band_index(days_after_planting, bands)]


def band_label(lower: int, bands: Sequence[int] = LEAD_BANDS) -> str:
    """``0–15`` for a band's lower bound; the last band is ``150+``."""
    position = list(bands).index(int(lower))
    if position == len(bands) - 1:
        return f"{lower}+"
    return f"{lower}–{bands[position + 1]}"
