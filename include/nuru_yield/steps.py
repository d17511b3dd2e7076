"""What every pipeline step returns: a frozen result dataclass with one method for XCom.

A step (a library function one DAG task calls: prepare, a shard, publish, a training step,
monitoring) takes typed arguments — run dates as :class:`datetime.date` — and returns a
frozen dataclass deriving from :class:`StepResult`. The DAG task hands ``result.xcom()`` to
XCom, a JSON-friendly dict (dates and times as ISO strings, readable in the Airflow UI),
and the next task rebuilds the result with ``ResultClass.from_xcom(payload)``.

Imports nothing of the package (import-linter checks it), so every layer can use it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from collections.abc import Callable, Mapping
from typing import Any, Self


class StepResult:
    """Base of the frozen result dataclasses; see the module docstring."""

    def xcom(self) -> dict[str, Any]:
        """The result as a JSON-friendly dict: what the DAG task returns to XCom."""
        return {
            field.name: _encoded(getattr(self, field.name))
            for field in dataclasses.fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_xcom(cls, payload: Mapping[str, Any]) -> Self:
        """The result again from :meth:`xcom`'s dict (as pulled from XCom)."""
        hints = typing.get_type_hints(cls)
        values = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            if field.name not in payload:
                continue  # a field with a default, or the constructor names what is missing
            value = payload[field.name]
            decode = _decoder(hints[field.name])
            values[field.name] = decode(value) if decode and isinstance(value, str) else value
        return cls(**values)


def _encoded(value: Any) -> Any:
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    return value


def _decoder(hint: Any) -> Callable[[str], Any] | None:
    """How to parse an ISO string back for a field typed ``hint`` (also ``X | None``)."""
    for option in (hint, *typing.get_args(hint)):
        if option is dt.datetime:
            return dt.datetime.fromisoformat
        if option is dt.date:
            return dt.date.fromisoformat
    return None
