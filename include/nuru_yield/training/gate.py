"""The champion/challenger gate: a pure decision over metrics computed on the same
evaluation rows for the candidate, the current champion and the naive reference.

The evaluation rows are the newest labelled Long Rains and Short Rains seasons, and the
per-county non-regression check runs per season × county, so a county that regresses in
one season only is caught, and the Long-Rains-only highland counties are checked too. A
season × county with fewer evaluation rows than ``min_county_rows`` is too noisy to veto a
promotion: it is reported as unchecked, never silently passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Season × county cells with fewer evaluation rows than this are not checked (their RMSE
# is too noisy to veto a promotion); the reason and the table name them.
MIN_COUNTY_ROWS = 30


def gate_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The part of :func:`~nuru_yield.training.evaluation.evaluate`'s result the gate uses
    and the audit keeps: overall metrics, and RMSE / row count per county and per season ×
    county (keys ``2024 Long Rains/Bungoma``)."""
    return {
        **{key: value for key, value in evaluation["overall"].items()},
        **{
            group: {
                key: {"rmse": metrics["rmse"], "n": int(metrics["n"])}
                for key, metrics in evaluation[group].items()
            }
            for group in ("season", "county", "season_county")
        },
    }


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class CountyCheck:
    """One row of the gate's evaluation table: a season × county on both sides."""

    season: str
    county: str
    n: int
    candidate_rmse: float
    other_rmse: float | None  # the champion's (or, for a first version, the naive reference's)
    status: str  # ok | worse | too_few_rows | not_compared

    @property
    def change(self) -> float | None:
        if self.other_rmse is None or self.other_rmse <= 0:
            return None
        return self.candidate_rmse / self.other_rmse - 1


def county_checks(
    candidate: dict[str, Any],
    other: dict[str, Any] | None,
    *,
    tolerance: float,
    min_county_rows: int = MIN_COUNTY_ROWS,
) -> list[CountyCheck]:
    """The candidate against ``other`` (:func:`gate_metrics` dicts) per season × county."""
    checks = []
    for key, mine in candidate["season_county"].items():
        season, county = key.split("/", 1)
        theirs = None if other is None else other.get("season_county", {}).get(key)
        if mine["n"] < min_county_rows:
            status = "too_few_rows"
        elif theirs is None or theirs["rmse"] <= 0:
            status = "not_compared"
        else:
            status = "worse" if mine["rmse"] > theirs["rmse"] * (1 + tolerance) else "ok"
        checks.append(
            CountyCheck(
                season=season,
                county=county,
                n=mine["n"],
                candidate_rmse=mine["rmse"],
                other_rmse=None if theirs is None else theirs["rmse"],
                status=status,
            )
        )
    return checks


def render_checks(checks: list[CountyCheck], other_label: str) -> str:
    """The gate's evaluation table for people: kg/ha as whole numbers, changes in %."""
    header = f"{'season':<18} {'county':<15} {'n':>6} {'candidate':>10} {other_label:>12} {'change':>8}  status"
    lines = [header]
    for check in sorted(checks, key=lambda c: (c.season, c.county)):
        other = "-" if check.other_rmse is None else f"{check.other_rmse:,.0f}"
        change = "-" if check.change is None else f"{check.change:+.1%}"
        lines.append(
            f"{check.season:<18} {check.county:<15} {check.n:>6,} {check.candidate_rmse:>10,.0f} "
            f"{other:>12} {change:>8}  {check.status.replace('_', ' ')}"
        )
    return "\n".join(lines)


def _change(new: float, old: float) -> str:
    return f"{(new / old - 1):+.1%}" if old > 0 else "n/a"


def _unchecked(checks: list[CountyCheck], min_county_rows: int) -> str:
    few = [f"{c.season} {c.county} (n={c.n})" for c in checks if c.status == "too_few_rows"]
    if not few:
        return ""
    return f"; not checked, fewer than {min_county_rows} evaluation rows: {', '.join(few)}"


def decide(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    naive: dict[str, Any],
    *,
    margin: float,
    tolerance: float,
    champion_version: str | None = None,
    min_county_rows: int = MIN_COUNTY_ROWS,
) -> GateDecision:
    """Promote only if the candidate's RMSE beats the champion's by ``margin`` (a share) and
    no season × county RMSE grows by more than ``tolerance``; with no champion yet, promote
    if it beats the naive reference. Arguments are :func:`gate_metrics` dicts."""
    rmse = candidate["rmse"]
    if champion is None:
        checks = county_checks(
            candidate, naive, tolerance=tolerance, min_county_rows=min_county_rows
        )
        unchecked = _unchecked(checks, min_county_rows)
        if rmse < naive["rmse"]:
            return GateDecision(
                True,
                f"first version: RMSE {rmse:,.0f} kg/ha beats the naive reference "
                f"{naive['rmse']:,.0f} ({_change(rmse, naive['rmse'])}){unchecked}",
            )
        return GateDecision(
            False,
            f"first version: RMSE {rmse:,.0f} kg/ha does not beat the naive reference "
            f"{naive['rmse']:,.0f}{unchecked}",
        )

    label = f"champion v{champion_version}" if champion_version else "the champion"
    checks = county_checks(
        candidate, champion, tolerance=tolerance, min_county_rows=min_county_rows
    )
    failures: list[str] = []
    required = champion["rmse"] * (1 - margin)
    if rmse > required:
        failures.append(
            f"RMSE {rmse:,.0f} kg/ha is not {margin:.1%} better than {label}'s "
            f"{champion['rmse']:,.0f} ({_change(rmse, champion['rmse'])}; needs ≤ {required:,.0f})"
        )
    worse = [
        f"{c.season} {c.county} {c.change:+.1%} (n={c.n})" for c in checks if c.status == "worse"
    ]
    if worse:
        failures.append(f"county RMSE worse than the {tolerance:.0%} tolerance: {', '.join(worse)}")
    unchecked = _unchecked(checks, min_county_rows)
    if failures:
        return GateDecision(False, "; ".join(failures) + unchecked)
    compared = [c for c in checks if c.status == "ok"]
    worst = max(compared, key=lambda c: c.change or 0.0, default=None)
    worst_text = (
        f" (worst: {worst.season} {worst.county} {worst.change:+.1%})"
        if worst is not None and worst.change is not None
        else ""
    )
    return GateDecision(
        True,
        f"RMSE {rmse:,.0f} kg/ha vs {label}'s {champion['rmse']:,.0f} "
        f"({_change(rmse, champion['rmse'])}); {len(compared)} season × county checks, "
        f"none worse by more than {tolerance:.0%}{worst_text}{unchecked}",
    )
