"""Everything a request handler needs, built once per app and injected with ``Depends``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from nuru_yield.config import Settings
from nuru_yield.names import CHALLENGER, CHAMPION
from nuru_yield.serving.caches import TtlCache, in_thread
from nuru_yield.serving.observability import ApiMetrics
from nuru_yield.serving.probes import (
    FeatureStoreProbe,
    RegistrySnapshot,
    import_registry_client,
    probe_feature_store,
    read_registry,
)
from nuru_yield.serving.store import PredictionStore, Row, as_utc

RegistryReader = Callable[[], RegistrySnapshot]
RegistryPreparation = Callable[[], object]
RETRY_SECONDS = 15.0  # a failed registry or lake probe is retried this soon
MAX_PROMOTIONS = 100


@dataclass(frozen=True)
class Freshness:
    """The newest partition: its run date, when it was scored, which models it holds."""

    run_date: dt.date
    scored_at: dt.datetime
    models: tuple[str, ...]

    def age_seconds(self, now: dt.datetime) -> float:
        return max(0.0, (now - as_utc(self.scored_at)).total_seconds())


@dataclass
class ApiState:
    settings: Settings
    store: PredictionStore
    read_registry: RegistryReader
    api_key: bytes | None = None
    # One-time set-up before the first registry read, not bound by the read's timeout:
    # MLflow's import takes seconds on a cold start, and a server that has just started is
    # not one whose registry "did not answer".
    prepare_registry: RegistryPreparation | None = None
    newest_run: TtlCache[dt.date | None] = field(init=False)
    freshness: TtlCache[Freshness | None] = field(init=False)
    registry: TtlCache[RegistrySnapshot] = field(init=False)
    feature_store: TtlCache[FeatureStoreProbe] = field(init=False)
    promotions: TtlCache[list[Row]] = field(init=False)
    metrics: ApiMetrics = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        timeout = settings.api_mlflow_timeout_seconds
        keep = settings.api_cache_seconds
        retry = min(keep, RETRY_SECONDS)
        self.newest_run = TtlCache(self._load_newest_run, settings.api_freshness_seconds)
        self.freshness = TtlCache(self._load_freshness, settings.api_freshness_seconds)
        self.registry = TtlCache(
            lambda: self._load_registry(timeout),
            lambda snapshot: keep if snapshot.connected else retry,
        )
        self.feature_store = TtlCache(
            lambda: in_thread(
                lambda: probe_feature_store(settings),
                timeout,
                lambda: FeatureStoreProbe(False, f"the lake did not answer within {timeout}s"),
            ),
            lambda probe: keep if probe.available else retry,
        )
        self.promotions = TtlCache(lambda: self.store.promotions(MAX_PROMOTIONS), keep)
        self.metrics = ApiMetrics(self._cached_age)
        self.store.report = self.metrics.database_event

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: PredictionStore,
        registry_reader: RegistryReader | None = None,
        prepare_registry: RegistryPreparation | None = None,
    ) -> ApiState:
        """The state of an app; without ``registry_reader``, MLflow's registry is read."""
        key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        if registry_reader is None:
            prepare_registry = prepare_registry or import_registry_client
            uri, timeout = settings.mlflow_tracking_uri, settings.api_mlflow_timeout_seconds
            registry_reader = lambda: read_registry(uri, timeout=timeout)  # noqa: E731
        return cls(
            settings=settings,
            store=store,
            read_registry=registry_reader,
            api_key=key or None,
            prepare_registry=prepare_registry,
        )

    async def _load_registry(self, timeout: float) -> RegistrySnapshot:
        if self.prepare_registry is not None:
            try:
                await asyncio.to_thread(self.prepare_registry)
            except Exception as error:
                return RegistrySnapshot.unreachable(f"cannot load the MLflow client: {error}")
            self.prepare_registry = None
        return await in_thread(
            self.read_registry,
            timeout,
            lambda: RegistrySnapshot.unreachable(f"MLflow did not answer within {timeout}s"),
        )

    async def _load_newest_run(self) -> dt.date | None:
        """The newest run date, for lookups to start from (one cheap query)."""
        newest = await self.store.newest()
        return newest["run_date"] if newest else None

    async def _load_freshness(self) -> Freshness | None:
        newest = await self.store.newest()
        if newest is None:
            return None
        run_date = newest["run_date"]
        models = [m for m in (CHAMPION, CHALLENGER) if await self.store.has_model(run_date, m)]
        return Freshness(run_date, newest["scored_at"], tuple(models))

    def _cached_age(self) -> float | None:
        fresh = self.freshness.value
        return fresh.age_seconds(dt.datetime.now(dt.UTC)) if fresh else None

    def clear_caches(self) -> None:
        caches = (self.newest_run, self.freshness, self.registry, self.feature_store)
        for cache in (*caches, self.promotions):
            cache.clear()


async def get_state(request: Request) -> ApiState:
    # async: FastAPI would run a plain function in a worker thread, on every request.
    return request.app.state.api


State = Annotated[ApiState, Depends(get_state)]
