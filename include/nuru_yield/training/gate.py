"""The champion/challenger gate: a pure decision over metrics computed on the same
evaluation rows for the candidate, the current champion and the naive reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Counties with fewer evaluation rows than this are left out of the per-county check: their
# RMSE is too noisy to veto a promotion (they still count in the overall RMSE).
MIN_COUNTY_ROWS = 30


def gate_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The part of :func:`~nuru_yield.training.evaluation.evaluate`'s result the gate uses
    and the audit keeps: overall metrics and RMSE / row count per county."""
    return {
        **{key: value for key, value in evaluation["overall"].items()},
        "county": {
            county: {"rmse": metrics["rmse"], "n": int(metrics["n"])}
            for county, metrics in evaluation["county"].items()
        },
    }


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def _change(new: float, old: float) -> str:
    return f"{(new / old - 1):+.1%}" if old > 0 else "n/a"


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
    no county's RMSE grows by more than ``tolerance``; with no champion yet, promote if it
    beats the naive reference. Arguments are :func:`gate_metrics` dicts."""
    rmse = candidate["rmse"]
    if champion is None:
        if rmse < naive["rmse"]:
            return GateDecision(
                True,
                f"first version: RMSE {rmse:.1f} beats the naive reference "
                f"{naive['rmse']:.1f} ({_change(rmse, naive['rmse'])})",
            )
        return GateDecision(
            False,
            f"first version: RMSE {rmse:.1f} does not beat the naive reference {naive['rmse']:.1f}",
        )

    label = f"champion v{champion_version}" if champion_version else "the champion"
    failures: list[str] = []
    required = champion["rmse"] * (1 - margin)
    if rmse > required:
        failures.append(
            f"RMSE {rmse:.1f} is not {margin:.1%} better than {label}'s "
            f"{champion['rmse']:.1f} ({_change(rmse, champion['rmse'])}; needs ≤ {required:.1f})"
        )
    worse: list[str] = []
    worst: tuple[float, str] | None = None
    for county, mine in sorted(candidate["county"].items()):
        theirs = champion["county"].get(county)
        if theirs is None or min(mine["n"], theirs["n"]) < min_county_rows or theirs["rmse"] <= 0:
            continue
        ratio = mine["rmse"] / theirs["rmse"]
        if worst is None or ratio > worst[0]:
            worst = (ratio, county)
        if ratio > 1 + tolerance:
            worse.append(f"{county} {ratio - 1:+.1%} (n={mine['n']})")
    if worse:
        failures.append(f"county RMSE worse than the {tolerance:.0%} tolerance: {', '.join(worse)}")
    if failures:
        return GateDecision(False, "; ".join(failures))
    worst_text = f" (worst: {worst[1]} {worst[0] - 1:+.1%})" if worst else ""
    return GateDecision(
        True,
        f"RMSE {rmse:.1f} vs {label}'s {champion['rmse']:.1f} "
        f"({_change(rmse, champion['rmse'])}); no county worse by more than "
        f"{tolerance:.0%}{worst_text}",
    )
