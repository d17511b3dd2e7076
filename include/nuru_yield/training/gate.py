"""The champion/challenger gate: a pure decision over metrics computed on the same
evaluation rows for the candidate, the current champion and the naive reference.

The evaluation rows are the newest labelled Long Rains and Short Rains seasons, and the
per-county non-regression check runs per season × county, so a county that regresses in
one season only is caught, and the Long-Rains-only highland counties are checked too. A
season × county with fewer evaluation rows than ``min_county_rows`` is too noisy to veto a
promotion: it is reported as unchecked, never silently passed.

Never worse than a normal season: in every lead-time band (days after planting at forecast,
:mod:`nuru_yield.models.leads`) with at least ``min_county_rows`` evaluation rows, the
candidate's RMSE must not exceed the county normal's on the same rows — a first version and
a challenger alike. A support team reads the first month's forecasts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nuru_yield.models.leads import band_label

# Season × county cells with fewer evaluation rows than this are not checked (their RMSE
# is too noisy to veto a promotion); the reason and the table name them.
MIN_COUNTY_ROWS = 30


def gate_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The part of :func:`~nuru_yield.training.evaluation.evaluate`'s result the gate uses
    and the audit keeps: overall metrics, RMSE / row count per county and per season ×
    county (keys ``2024 Long Rains/Bungoma``), and per lead-time band (``dap``, keyed by the
    band's lower bound) the RMSE, the county normal's RMSE on the same rows, the coverage
    and the row count."""
    return {
        **{key: value for key, value in evaluation["overall"].items()},
        **{
            group: {
                key: {"rmse": metrics["rmse"], "n": int(metrics["n"])}
                for key, metrics in evaluation[group].items()
            }
            for group in ("season", "county", "season_county")
        },
        "dap": {
            key: {
                "rmse": metrics["rmse"],
                "normal_rmse": metrics.get("normal_rmse"),
                "coverage": metrics.get("coverage"),
                "n": int(metrics["n"]),
            }
            for key, metrics in evaluation["dap"].items()
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


@dataclass(frozen=True)
class BandCheck:
    """One lead-time band of the evaluation: the candidate against the county normal."""

    band: int  # lower bound, days after planting
    n: int
    rmse: float
    normal_rmse: float | None
    coverage: float | None
    status: str  # ok | worse_than_normal | too_few_rows | not_compared

    @property
    def label(self) -> str:
        return band_label(self.band)


def band_checks(candidate: dict[str, Any], *, min_rows: int = MIN_COUNTY_ROWS) -> list[BandCheck]:
    """The candidate's RMSE against the county normal's in each lead-time band."""
    checks = []
    for key, metrics in sorted(candidate.get("dap", {}).items(), key=lambda item: int(item[0])):
        normal = metrics.get("normal_rmse")
        if metrics["n"] < min_rows:
            status = "too_few_rows"
        elif normal is None:
            status = "not_compared"
        else:
            status = "worse_than_normal" if metrics["rmse"] > normal else "ok"
        checks.append(
            BandCheck(
                band=int(key),
                n=int(metrics["n"]),
                rmse=float(metrics["rmse"]),
                normal_rmse=None if normal is None else float(normal),
                coverage=metrics.get("coverage"),
                status=status,
            )
        )
    return checks


def render_bands(checks: list[BandCheck]) -> str:
    """The evaluation by lead-time band for people: RMSE beside the county normal's."""
    lines = [
        f"{'days after planting':<20} {'n':>7} {'RMSE':>7} {'normal':>7} {'ratio':>6} "
        f"{'coverage':>8}  status"
    ]
    for check in checks:
        normal = "-" if check.normal_rmse is None else f"{check.normal_rmse:,.0f}"
        ratio = "-" if not check.normal_rmse else f"{check.rmse / check.normal_rmse:.2f}"
        coverage = "-" if check.coverage is None else f"{check.coverage:.2f}"
        lines.append(
            f"{check.label:<20} {check.n:>7,} {check.rmse:>7,.0f} {normal:>7} {ratio:>6} "
            f"{coverage:>8}  {check.status.replace('_', ' ')}"
        )
    return "\n".join(lines)


def _band_failures(candidate: dict[str, Any], min_rows: int) -> list[str]:
    worse = [
        c for c in band_checks(candidate, min_rows=min_rows) if c.status == "worse_than_normal"
    ]
    if not worse:
        return []
    return [
        "worse than the county normal at "
        + ", ".join(
            f"{c.label} days after planting (RMSE {c.rmse:,.0f} vs {c.normal_rmse:,.0f}, n={c.n})"
            for c in worse
        )
    ]


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
    """Promote only if the candidate's RMSE beats the champion's by ``margin`` (a share), no
    season × county RMSE grows by more than ``tolerance`` and no lead-time band is worse than
    the county normal; with no champion yet, promote if it beats the naive reference overall
    and the county normal in every band. Arguments are :func:`gate_metrics` dicts."""
    rmse = candidate["rmse"]
    band_failures = _band_failures(candidate, min_county_rows)
    if champion is None:
        checks = county_checks(
            candidate, naive, tolerance=tolerance, min_county_rows=min_county_rows
        )
        unchecked = _unchecked(checks, min_county_rows)
        failures = list(band_failures)
        if rmse >= naive["rmse"]:
            failures.insert(
                0,
                f"RMSE {rmse:,.0f} kg/ha does not beat the naive reference {naive['rmse']:,.0f}",
            )
        if failures:
            return GateDecision(False, "first version: " + "; ".join(failures) + unchecked)
        return GateDecision(
            True,
            f"first version: RMSE {rmse:,.0f} kg/ha beats the naive reference "
            f"{naive['rmse']:,.0f} ({_change(rmse, naive['rmse'])}), and the county normal "
            f"in every lead-time band{unchecked}",
        )

    label = f"champion v{champion_version}" if champion_version else "the champion"
    checks = county_checks(
        candidate, champion, tolerance=tolerance, min_county_rows=min_county_rows
    )
    failures: list[str] = list(band_failures)
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
        f"none worse by more than {tolerance:.0%}{worst_text}; better than the county normal "
        f"in every lead-time band{unchecked}",
    )
