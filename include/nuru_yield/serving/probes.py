"""What /health and /models learn from outside the predictions database: the MLflow registry
(docs/DESIGN.md, "Models and the registry") and the lake's feature partitions. Both are blocking calls, run in a thread with
a short timeout and cached; a failure makes the API degraded, never unable to serve."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nuru_yield.config import Settings
from nuru_yield.errors import NuruError
from nuru_yield.lake import Lake
from nuru_yield.names import FEATURES, MODEL_NAME

MAX_VERSIONS = 20


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RegistrySnapshot:
    connected: bool
    error: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    fetched_at: dt.datetime = field(default_factory=_now)

    @classmethod
    def unreachable(cls, reason: str) -> RegistrySnapshot:
        return cls(connected=False, error=reason)


def _missing_sqlite_store(tracking_uri: str) -> str | None:
    """Opening a SQLite tracking URI creates the file: a read-only API must not do that."""
    if not tracking_uri.startswith("sqlite"):
        return None
    database = sa.make_url(tracking_uri).database
    if database and not Path(database).exists():
        return f"no MLflow database at {database}"
    return None


def import_registry_client() -> None:
    """Import MLflow's client (blocking; seconds on a cold start, once per process)."""
    import mlflow  # noqa: F401


def read_registry(
    tracking_uri: str, model_name: str = MODEL_NAME, timeout: float = 3.0
) -> RegistrySnapshot:
    """Versions, aliases and run metrics of the registered model (blocking)."""
    missing = _missing_sqlite_store(tracking_uri)
    if missing:
        return RegistrySnapshot.unreachable(missing)
    # Read by MLflow's REST client at call time: fail fast instead of retrying for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            registered = client.get_registered_model(model_name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return RegistrySnapshot(connected=True)
            raise
        aliases = {alias: str(version) for alias, version in registered.aliases.items()}
        versions = client.search_model_versions(
            f"name = '{model_name}'", max_results=MAX_VERSIONS, order_by=["version_number DESC"]
        )
        return RegistrySnapshot(
            connected=True,
            aliases=aliases,
            versions=[_version(client, version, aliases) for version in versions],
        )
    except Exception as error:  # any registry failure (network, schema, auth) is "not connected"
        return RegistrySnapshot.unreachable(f"{type(error).__name__}: {error}".splitlines()[0])


def _version(client: Any, version: Any, aliases: dict[str, str]) -> dict[str, Any]:
    number = str(version.version)
    metrics: dict[str, float] = {}
    if version.run_id:
        from mlflow.exceptions import MlflowException

        try:
            metrics = dict(client.get_run(version.run_id).data.metrics)
        except MlflowException:  # the run was deleted: the version stays listed
            metrics = {}
    created = version.creation_timestamp
    return {
        "version": number,
        "aliases": sorted(alias for alias, target in aliases.items() if target == number),
        "run_id": version.run_id,
        "status": version.status,
        "created_at": dt.datetime.fromtimestamp(created / 1000, dt.UTC) if created else None,
        "metrics": metrics,
        "tags": dict(version.tags or {}),
    }


@dataclass(frozen=True)
class FeatureStoreProbe:
    available: bool
    reason: str | None = None


def probe_feature_store(settings: Settings) -> FeatureStoreProbe:
    """Whether the lake holds at least one materialized feature partition (blocking)."""
    try:
        dates = Lake.from_settings(settings).partition_dates(FEATURES)
    except NuruError as error:
        return FeatureStoreProbe(False, str(error))
    if not dates:
        return FeatureStoreProbe(False, "no feature partitions in the lake")
    return FeatureStoreProbe(True)
