"""The metadata every model logged by training carries in its MLmodel file (read back by
:func:`nuru_yield.models.loaded.load_model` and checked before a version is registered): the
feature order it was fitted on, its conformal interval factors, its link and the seasons it
learned from, the blend toward the county normal (``models.normal``), the ranges of the
inputs it was trained on (``models.ranges``), and the artifact names of a training run's
models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nuru_yield.errors import RegistryError
from nuru_yield.models.intervals import INTERVAL_METHOD, ConformalIntervals
from nuru_yield.models.normal import Blend
from nuru_yield.models.ranges import TrainingRanges

MODEL_ARTIFACT = "model"
# The ensemble run's fit on the training seasons only: what the gate compares, on seasons
# neither side learned from. Its ``model`` is the refit on every labelled season.
HOLDOUT_ARTIFACT = "holdout_model"
LINK = "log"


def model_metadata(
    candidate: str,
    feature_columns: Sequence[str],
    intervals: ConformalIntervals,
    fitted_seasons: Sequence[str],
    blend: Blend | None,
    holdout_artifact: str | None = None,
    ranges: TrainingRanges | None = None,
) -> dict[str, Any]:
    """The MLmodel ``metadata`` logged with every candidate (read back by :func:`load_model`):
    ``holdout_artifact`` names the run's hold-out fit when this model is a refit. Models
    logged before the blend existed have no ``blend``: they forecast from the model alone;
    models logged before the ranges have no ``feature_ranges``: monitoring cannot tell
    whether tonight's inputs lie outside what they were trained on, and says so."""
    return {
        "candidate": candidate,
        "feature_columns": list(feature_columns),
        "intervals": intervals.to_dict(),
        "blend": None if blend is None else blend.to_dict(),
        "link": LINK,
        "fitted_seasons": list(fitted_seasons),
        "holdout_artifact": holdout_artifact,
        "feature_ranges": None if ranges is None else ranges.to_dict(),
    }


def checked_metadata(metadata: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """``metadata`` if it is that of a model logged by training, else a RegistryError."""
    if not metadata or "feature_columns" not in metadata or "intervals" not in metadata:
        raise RegistryError(
            f"{source} has no model logged by nuru-yield training "
            "(no feature/interval metadata): scoring could not use it"
        )
    method = metadata["intervals"].get("method")
    if metadata.get("link") != LINK or method != INTERVAL_METHOD:
        raise RegistryError(
            f"{source} was trained by an earlier version of nuru-yield (forecasts on the "
            f"yield scale, intervals {method!r}) that could forecast negative yields: "
            "retrain with `nuru-yield train` and promote the new version"
        )
    return metadata
