"""An empty night is not a success: a run date without any plot-season in progress is
recorded as ``no_plots_in_progress`` in ``scoring_runs``, exits with its own code and one
line, leaves the previous night served, and makes ``/health`` say so until a run succeeds."""

from __future__ import annotations

import datetime as dt

import pytest

from nuru_yield.cli import main
from nuru_yield.lake import Lake
from nuru_yield.names import features_path
from tests.fixtures.scoring import PLOTS, RUN_DATE, Registry, write_features
from tests.integration.test_api_support import serving
from tests.reliability.pipeline_support import rows, runs, served_run

EMPTY_NIGHT = RUN_DATE + dt.timedelta(days=1)


def _health(monkeypatch: pytest.MonkeyPatch) -> dict:
    from nuru_yield.config import get_settings

    with serving(monkeypatch, get_settings().predictions_db_url) as client:
        return client.get("/health").json()


def test_an_empty_night_is_its_own_outcome_everywhere(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nuru_yield.features.columns import OUTPUT_SCHEMA

    write_features()
    main(["score", "--date", str(RUN_DATE)])
    capsys.readouterr()
    Lake.from_settings().write_parquet(features_path(EMPTY_NIGHT), OUTPUT_SCHEMA.empty_table())

    with pytest.raises(SystemExit) as exited:
        main(["score", "--date", str(EMPTY_NIGHT)])

    assert exited.value.code == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: no plot-season in progress on {EMPTY_NIGHT}: ")
    first, empty = runs().values()
    assert (first.status, empty.status) == ("success", "no_plots_in_progress")
    assert empty.message == line.removeprefix("error: ")
    counted = rows("SELECT plots_scored FROM scoring_runs WHERE run_id = :r", r=empty.run_id)
    assert counted[0].plots_scored == 0
    assert served_run(RUN_DATE) == {first.run_id} and served_run(EMPTY_NIGHT) == set()
    assert len(rows("SELECT 1 FROM predictions")) == PLOTS  # the last good night stays

    health = _health(monkeypatch)
    assert health["status"] == "degraded"
    assert (
        f"last scoring run ({EMPTY_NIGHT}, {empty.run_id}) ended no_plots_in_progress: "
        f"no plot-season in progress on {EMPTY_NIGHT}"
    ) in " | ".join(health["reasons"])

    main(["score", "--date", str(RUN_DATE)])  # a night that succeeds clears it
    assert not any("last scoring run" in reason for reason in _health(monkeypatch)["reasons"])
