"""What the steps of one scoring run pass each other (via XCom between Airflow tasks), and
the statuses a run's ``scoring_runs`` row takes (docs/DESIGN.md, "Database")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from nuru_yield.names import CHALLENGER, CHAMPION, PREDICTION_LOG
from nuru_yield.nightly import NightPlan, NightResult
from nuru_yield.steps import StepResult

RUNNING, SUCCESS, FAILED = "running", "success", "failed"
NO_PLOTS_IN_PROGRESS = "no_plots_in_progress"


@dataclass(frozen=True)
class ScoringPlan(NightPlan):
    """What every step of one run shares: the models resolved once, so that every shard
    scores with the same versions even if an alias moves meanwhile."""

    model_name: str
    champion_version: str
    challenger_version: str | None
    features_uri: str
    started_at: dt.datetime

    STEP = "scoring"
    PREFIX = PREDICTION_LOG

    @property
    def aliases(self) -> dict[str, str]:
        """Alias → version of every model this run scores (the champion first)."""
        scored = {CHAMPION: self.champion_version}
        if self.challenger_version is not None:
            scored[CHALLENGER] = self.challenger_version
        return scored


@dataclass(frozen=True)
class ShardResult(StepResult):
    """What one shard scored and staged, and where its time went."""

    shard: int
    plots: int
    rows: int
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringResult(NightResult):
    """A published night: what the ``predictions`` asset event and ``scoring_runs`` say."""

    model_version: str
    challenger_version: str | None
    plots_scored: int
    plots_rejected: int | None
    rows: int
    prediction_log_uri: str
    seconds: dict[str, float]
    # The county step after the swap (``scoring.counties``): its rows and bulletin, or why
    # it failed (the plot forecasts are published all the same).
    county_rows: int | None = None
    bulletin_uri: str | None = None
    counties_error: str | None = None

    def event_extra(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "rows": self.rows,
            "model_version": self.model_version,
            "uri": self.prediction_log_uri,
        }
