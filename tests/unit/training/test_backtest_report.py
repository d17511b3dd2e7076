"""What ``nuru-yield backtest`` prints: the cost table against the unconstrained ('free')
recipe when that recipe ran, and one plain line saying how to get it when it did not (a
single-recipe run printed pandas' "Empty DataFrame" instead)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from nuru_yield.training.backtest import REFERENCE_RECIPE, BacktestReport


def _rows(recipes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "recipe": recipe,
                "part": "hold-out (gate)",
                "season": "2024 Long Rains",
                "lead_time_days": lead,
                "n": 100,
                "rmse": rmse + lead,
                "coverage": 0.8,
                "width": 3000.0,
            }
            for recipe, rmse in zip(recipes, (1000.0, 1100.0), strict=False)
            for lead in (30, 60)
        ]
    )


def test_one_recipe_says_how_to_measure_its_cost() -> None:
    text = BacktestReport(dt.date(2025, 6, 15), _rows(["pairwise+dry"])).render()
    assert text.splitlines()[-1] == (
        f"RMSE cost against the {REFERENCE_RECIPE!r} recipe: not measured "
        f"(add --recipe {REFERENCE_RECIPE})"
    )
    assert "Empty DataFrame" not in text


def test_with_the_reference_recipe_the_cost_table_is_printed() -> None:
    text = BacktestReport(dt.date(2025, 6, 15), _rows([REFERENCE_RECIPE, "pairwise+dry"])).render()
    lines = text.splitlines()
    assert f"RMSE cost against the {REFERENCE_RECIPE!r} recipe, by lead time:" in lines
    # RMSE 1,130 and 1,160 against 1,030 and 1,060 at 30 and 60 days.
    assert lines[-1].split() == ["pairwise+dry", "+9.7%", "+9.4%"]
