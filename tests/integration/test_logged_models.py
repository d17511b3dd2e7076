"""Models logged by an earlier version of the code still load and forecast the same.

The fixtures in ``tests/fixtures/logged_models/`` were written before training's modules moved
into ``nuru_yield.models``. A logged model names the classes it is made of by import path
(skops, like pickle), so moving such a class would make every registered model unloadable.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nuru_yield.models.loaded import load_model

LOGGED = Path(__file__).resolve().parents[1] / "fixtures" / "logged_models"


@pytest.mark.parametrize("name", ["ensemble", "linear_baseline"])
def test_a_model_logged_before_the_move_loads_and_forecasts_the_same(name: str) -> None:
    expected = json.loads((LOGGED / name / "expected.json").read_text())
    features = np.array(expected["features"], dtype=np.float64)

    model = load_model(str(LOGGED / name))

    predicted = model.predict(features)
    np.testing.assert_allclose(predicted, expected["forecast"], rtol=1e-9)
    lower, upper = model.interval(predicted, np.array(expected["days_after_planting"]))
    np.testing.assert_allclose(lower, expected["lower"], rtol=1e-9)
    np.testing.assert_allclose(upper, expected["upper"], rtol=1e-9)


def test_every_project_class_a_logged_model_names_is_importable_at_that_path() -> None:
    """The project's classes a logged model refers to must stay at their import path (or an
    alias must remain there)."""
    named = set()
    for mlmodel in LOGGED.glob("*/MLmodel"):
        trusted = yaml.safe_load(mlmodel.read_text())["flavors"]["sklearn"]["skops_trusted_types"]
        named |= {path for path in trusted if path.startswith("nuru_yield.")}
    assert named == {"nuru_yield.models.ensemble.LogLinkVotingRegressor"}
    for path in named:
        module, _, attribute = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attribute), type), path
