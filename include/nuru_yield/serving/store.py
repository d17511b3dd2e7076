"""Read-only access to the prediction tables: PostgreSQL through asyncpg, SQLite in a thread.

Each query is written once, as SQLAlchemy ``text()`` with named parameters (parameterised,
never formatted with values). The PostgreSQL store compiles it to asyncpg's ``$n`` form and
runs it as a prepared statement cached per connection (asyncpg primary-key
lookups ≈1.7× a psycopg async pool: docs/NOTES.md, "Speed"); its sessions are ``default_transaction_read_only``.
The SQLite store (the embedded default) runs it through SQLAlchemy in a worker thread on a
connection opened with ``mode=ro``. A failing database surfaces as
:class:`~nuru_yield.errors.DatabaseError` with a short reason and never the SQL.

One timeout policy covers every round trip, the health ping included (:meth:`_fetch`):
waiting for a free connection, connecting and running the query together get at most
``timeout`` seconds (``API_DB_TIMEOUT_SECONDS``). A database that stops answering (a frozen
server, a network black hole) costs a request that long, not the kernel's TCP timeout, and
the connection that did not answer is dropped, so its slot is free again.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nuru_yield.db.schema import (
    PREDICTION_COLUMNS,
    county_forecasts,
    county_skill,
    model_promotions,
    predictions,
    scoring_runs,
)
from nuru_yield.errors import ConfigError, DatabaseError
from nuru_yield.names import CHAMPION
from nuru_yield.serving.deadlines import deadline

if TYPE_CHECKING:
    import asyncpg

Row = Mapping[str, Any]

MAX_GATHERED = 1000  # lookups per gathered query, as `POST /predict/batch` allows


@dataclass(frozen=True)
class Lookup:
    """One plot to look up: optional season filters, and which stored models may answer.

    ``fallback`` and ``preferred`` are stored model names (``champion``/``challenger``); of two
    rows from the same night the preferred model's wins. Equal names mean "only this model".
    """

    plot_id: int
    season: str | None = None
    season_year: int | None = None
    fallback: str = CHAMPION
    preferred: str = CHAMPION


def _newest_first(prefix: str = "") -> str:
    # Newest run first; of two plot-seasons in progress on one night the later one (a year's
    # Short Rains follow its Long Rains).
    return f"{prefix}run_date DESC, {prefix}season_year DESC, {prefix}season DESC"


# Parameter types, so that PostgreSQL knows them even where a parameter is first seen in
# `:x IS NULL` (asyncpg then gets `$n::TYPE`), and SQLite gets dates as ISO text.
_PARAMETER_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "plot_id": sa.BigInteger(),
    "season": sa.String(),
    "season_year": sa.Integer(),
    "fallback": sa.String(),
    "preferred": sa.String(),
    "model_name": sa.String(),
    "as_of": sa.Date(),
    "county": sa.String(),
    "model_version": sa.String(),
    "run_date": sa.Date(),
    "since": sa.Date(),
    "limit": sa.Integer(),
    "offset": sa.Integer(),
}


def _query(sql: str, *result_columns: sa.ColumnElement[Any]) -> Any:
    """A typed textual query: typed parameters, and typed results (SQLite returns dates,
    datetimes and JSON as text otherwise)."""
    binds = [
        sa.bindparam(name, type_=type_)
        for name, type_ in _PARAMETER_TYPES.items()
        if re.search(rf":{name}\b", sql)
    ]
    return sa.text(sql).bindparams(*binds).columns(*result_columns)


_COLUMNS = ", ".join(PREDICTION_COLUMNS)
_PREDICTION_TYPES = tuple(predictions.c)

_LATEST = f"""
SELECT {_COLUMNS} FROM predictions
WHERE plot_id = :plot_id AND model_name IN (:fallback, :preferred)
  AND (:season IS NULL OR season = :season)
  AND (:season_year IS NULL OR season_year = :season_year) {{since}}
ORDER BY {_newest_first()}, (model_name = :preferred) DESC
LIMIT 1
"""
# Each lookup comes in two forms: over every night, and over the nights since a given one
# (on PostgreSQL that prunes the search to the newest partition instead of one index probe
# per night of the season).
LATEST = {
    since: _query(_LATEST.format(since=clause), *_PREDICTION_TYPES)
    for since, clause in ((False, ""), (True, "AND run_date >= :since"))
}

# The batch lookup: one query for up to 1,000 plots. Only the source of the request rows
# differs between the databases (arrays on PostgreSQL, one JSON parameter on SQLite).
_LATEST_MANY = """
WITH req AS ({requests})
SELECT ord, {columns} FROM (
    SELECT req.ord, {p_columns}, ROW_NUMBER() OVER (
        PARTITION BY req.ord ORDER BY {newest_first}, (p.model_name = req.preferred) DESC
    ) AS pick
    FROM req JOIN predictions p
      ON p.plot_id = req.plot_id AND p.model_name IN (req.fallback, req.preferred)
     AND (req.season IS NULL OR p.season = req.season)
     AND (req.season_year IS NULL OR p.season_year = req.season_year) {since}
) ranked
WHERE pick = 1
"""
_REQUESTS = {
    "postgresql": """
        SELECT * FROM unnest(
            CAST(:plot_ids AS bigint[]), CAST(:seasons AS text[]),
            CAST(:season_years AS integer[]), CAST(:fallbacks AS text[]),
            CAST(:preferreds AS text[])
        ) WITH ORDINALITY AS r(plot_id, season, season_year, fallback, preferred, ord)
    """,
    "sqlite": """
        SELECT CAST(key AS INTEGER) + 1 AS ord,
               json_extract(value, '$[0]') AS plot_id, json_extract(value, '$[1]') AS season,
               json_extract(value, '$[2]') AS season_year,
               json_extract(value, '$[3]') AS fallback, json_extract(value, '$[4]') AS preferred
        FROM json_each(:requests)
    """,
}
LATEST_MANY = {
    (dialect, since): _query(
        _LATEST_MANY.format(
            requests=requests,
            columns=_COLUMNS,
            p_columns=", ".join(f"p.{column}" for column in PREDICTION_COLUMNS),
            newest_first=_newest_first("p."),
            since=clause,
        ),
        sa.column("ord", sa.Integer),
        *_PREDICTION_TYPES,
    )
    for dialect, requests in _REQUESTS.items()
    for since, clause in ((False, ""), (True, "AND p.run_date >= :since"))
}

HISTORY = _query(
    f"""
    SELECT {_COLUMNS} FROM predictions
    WHERE plot_id = :plot_id AND model_name = :model_name
      AND (:season IS NULL OR season = :season)
      AND (:season_year IS NULL OR season_year = :season_year)
      AND (:as_of IS NULL OR run_date <= :as_of)
    ORDER BY {_newest_first()}
    LIMIT :limit OFFSET :offset
    """,
    *_PREDICTION_TYPES,
)

# Both use the primary key (it leads with run_date): cheap at any table size.
NEWEST = _query(
    "SELECT run_date, scored_at FROM predictions ORDER BY run_date DESC LIMIT 1",
    predictions.c.run_date,
    predictions.c.scored_at,
)
HAS_MODEL = _query(
    "SELECT 1 AS present FROM predictions "
    "WHERE run_date = :run_date AND model_name = :model_name LIMIT 1",
    sa.column("present", sa.Integer),
)

PROMOTIONS = _query(
    f"SELECT {', '.join(model_promotions.c.keys())} FROM model_promotions "
    "ORDER BY decided_at DESC, id DESC LIMIT :limit",
    *model_promotions.c,
)

# County forecasts (docs/DESIGN.md, "County bulletins"): a night's table, a county's newest
# forecast, its season night by night, and the hindcast skill of the version behind it.
_COUNTY_COLUMNS = ", ".join(column.name for column in county_forecasts.columns)
COUNTY_NIGHT = _query(
    "SELECT MAX(run_date) AS run_date FROM county_forecasts "
    "WHERE (:as_of IS NULL OR run_date <= :as_of)",
    county_forecasts.c.run_date,
)
COUNTY_TABLE = _query(
    f"SELECT {_COUNTY_COLUMNS} FROM county_forecasts "
    "WHERE run_date = :run_date AND (:season IS NULL OR season = :season) "
    "ORDER BY county, season_year, season",
    *county_forecasts.c,
)
COUNTY_LATEST = _query(
    f"SELECT {_COUNTY_COLUMNS} FROM county_forecasts "
    "WHERE county = :county AND (:season IS NULL OR season = :season) "
    "AND (:as_of IS NULL OR run_date <= :as_of) "
    "ORDER BY run_date DESC, season_year DESC, season DESC LIMIT 1",
    *county_forecasts.c,
)
_TRAJECTORY = (
    "run_date",
    "lead_days",
    "n_plots",
    "forecast_kg_per_ha",
    "lower_kg_per_ha",
    "upper_kg_per_ha",
    "pct_of_5yr_mean",
    "status",
)
COUNTY_TRAJECTORY = _query(
    f"SELECT {', '.join(_TRAJECTORY)} FROM county_forecasts "
    "WHERE county = :county AND season = :season AND season_year = :season_year "
    "AND run_date <= :run_date ORDER BY run_date LIMIT :limit",
    *(county_forecasts.c[name] for name in _TRAJECTORY),
)
COUNTY_SKILL = _query(
    f"SELECT {', '.join(column.name for column in county_skill.columns)} FROM county_skill "
    "WHERE model_name = :model_name AND model_version = :model_version "
    "AND county = :county AND season = :season ORDER BY lead_days",
    *county_skill.c,
)

PING = _query("SELECT 1 AS ok", sa.column("ok", sa.Integer))

# The newest scoring run that has an outcome (success, failed, no_plots_in_progress).
LAST_SCORING_RUN = _query(
    "SELECT run_id, run_date, status, message FROM scoring_runs "
    "WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1",
    *(scoring_runs.c[name] for name in ("run_id", "run_date", "status", "message")),
)


class PredictionStore(abc.ABC):
    """Lookups of stored predictions. Every method raises DatabaseError when the DB fails,
    or does not answer within ``timeout`` seconds.

    ``report`` is told of every database failure and retry (one of :data:`EVENTS`), for the
    API's metrics.
    """

    dialect: str

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.report: Callable[[str], None] = _ignore
        # Single lookups waiting to be answered together, by `since` (see `latest`).
        self._gathering: dict[dt.date | None, list[tuple[Lookup, asyncio.Future[Row | None]]]]
        self._gathering = {}
        self._answering: set[asyncio.Task[None]] = set()

    async def latest(self, lookup: Lookup, since: dt.date | None = None) -> Row | None:
        """The newest stored forecast for one plot (optionally one season), or None.

        ``since`` is the newest run date known (it may lag): nights from it are searched
        first, all nights only for a plot not scored since. The answer is the same.

        Lookups made while the event loop is busy are answered together by one
        :meth:`latest_many` query, as a database commits a group of transactions at once:
        under load one round trip serves many requests (measured on PostgreSQL: 8 plots per
        query cost the server 52 µs each instead of 116 µs, the client 28 µs instead of
        144 µs; ``nuru-yield bench api --compare`` at saturation: 90–110 µs less API CPU
        and 80–90 µs less PostgreSQL CPU per request than one query per lookup), while a
        lookup on an idle server is sent at once, alone.
        """
        gathering = self._gathering.get(since)
        if gathering is None or len(gathering) >= MAX_GATHERED:
            gathering = self._gathering[since] = []
            task = asyncio.create_task(self._answer(since, gathering))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        answer: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        gathering.append((lookup, answer))
        return await answer

    async def _answer(
        self, since: dt.date | None, gathered: list[tuple[Lookup, asyncio.Future[Row | None]]]
    ) -> None:
        """Answer the lookups gathered until this task first runs (the next loop iteration)."""
        if self._gathering.get(since) is gathered:
            del self._gathering[since]
        answers = [answer for _, answer in gathered]
        try:
            if len(gathered) == 1:
                rows = [await self._latest_one(gathered[0][0], since)]
            else:
                rows = await self.latest_many([lookup for lookup, _ in gathered], since)
        except Exception as error:
            for answer in answers:
                if not answer.done():
                    answer.set_exception(error)
            return
        except BaseException:  # cancelled (the server is stopping): so are the lookups
            for answer in answers:
                answer.cancel()
            raise
        for answer, row in zip(answers, rows, strict=True):
            if not answer.done():  # a client that went away cancelled its own
                answer.set_result(row)

    async def _latest_one(self, lookup: Lookup, since: dt.date | None) -> Row | None:
        params = _lookup_params(lookup)
        if since is not None:
            rows = await self._fetch(LATEST[True], {**params, "since": since})
            if rows:
                return rows[0]
        rows = await self._fetch(LATEST[False], params)
        return rows[0] if rows else None

    async def latest_many(
        self, lookups: Sequence[Lookup], since: dt.date | None = None
    ) -> list[Row | None]:
        """:meth:`latest` for many plots, in one query (two with ``since``, when some plots
        were not scored since); aligned with ``lookups``."""
        found: list[Row | None] = [None] * len(lookups)
        pending = list(range(len(lookups)))
        for narrowed in (True, False) if since is not None else (False,):
            params = self._many_params([lookups[i] for i in pending])
            query = LATEST_MANY[self.dialect, narrowed]
            for row in await self._fetch(query, {**params, "since": since}):
                found[pending[row["ord"] - 1]] = row
            pending = [i for i in pending if found[i] is None]
            if not pending:
                break
        return found

    async def history(
        self,
        plot_id: int,
        model_name: str,
        *,
        season: str | None,
        season_year: int | None,
        as_of: dt.date | None,
        limit: int,
        offset: int,
    ) -> list[Row]:
        """A plot's forecasts by one model, newest first, scored on or before ``as_of``."""
        return await self._fetch(
            HISTORY,
            {
                "plot_id": plot_id,
                "model_name": model_name,
                "season": season,
                "season_year": season_year,
                "as_of": as_of,
                "limit": limit,
                "offset": offset,
            },
        )

    async def newest(self) -> Row | None:
        """``run_date`` and ``scored_at`` of a row of the newest partition, or None if empty."""
        rows = await self._fetch(NEWEST, {})
        return rows[0] if rows else None

    async def has_model(self, run_date: dt.date, model_name: str) -> bool:
        rows = await self._fetch(HAS_MODEL, {"run_date": run_date, "model_name": model_name})
        return bool(rows)

    async def promotions(self, limit: int) -> list[Row]:
        """The newest entries of the ``model_promotions`` audit."""
        return await self._fetch(PROMOTIONS, {"limit": limit})

    async def last_scoring_run(self) -> Row | None:
        """``run_id``, ``run_date``, ``status`` and ``message`` of the newest finished run."""
        rows = await self._fetch(LAST_SCORING_RUN, {})
        return rows[0] if rows else None

    async def county_night(self, as_of: dt.date | None) -> dt.date | None:
        """The newest night with county forecasts, on or before ``as_of`` (None: none)."""
        rows = await self._fetch(COUNTY_NIGHT, {"as_of": as_of})
        return rows[0]["run_date"] if rows else None

    async def county_table(self, run_date: dt.date, season: str | None) -> list[Row]:
        """Every county forecast of one night (of one season kind)."""
        return await self._fetch(COUNTY_TABLE, {"run_date": run_date, "season": season})

    async def county_forecast(
        self, county: str, season: str | None, as_of: dt.date | None
    ) -> Row | None:
        """A county's newest forecast on or before ``as_of`` (of one season kind)."""
        params = {"county": county, "season": season, "as_of": as_of}
        rows = await self._fetch(COUNTY_LATEST, params)
        return rows[0] if rows else None

    async def county_trajectory(
        self, county: str, season: str, season_year: int, run_date: dt.date, limit: int
    ) -> list[Row]:
        """A county-season's forecasts night by night up to ``run_date``, oldest first."""
        params = {
            "county": county,
            "season": season,
            "season_year": season_year,
            "run_date": run_date,
            "limit": limit,
        }
        return await self._fetch(COUNTY_TRAJECTORY, params)

    async def county_skill(
        self, model_name: str, model_version: str, county: str, season: str
    ) -> list[Row]:
        """A version's hindcast skill for a county and season kind, by lead time."""
        params = {
            "model_name": model_name,
            "model_version": model_version,
            "county": county,
            "season": season,
        }
        return await self._fetch(COUNTY_SKILL, params)

    async def ping(self) -> None:
        await self._fetch(PING, {})

    async def _fetch(self, query: Any, params: dict[str, Any]) -> list[Row]:
        """Every query goes through here: ``query`` answered within :attr:`timeout`."""
        try:
            async with deadline(self.timeout):
                return await self._run(query, params)
        except TimeoutError:
            self.report(TIMEOUT)
            raise _unavailable(f"no answer within {self.timeout:g}s") from None

    @abc.abstractmethod
    async def _run(self, query: Any, params: dict[str, Any]) -> list[Row]:
        """Run ``query``; cancelled when it takes too long (the store must stay usable)."""

    @abc.abstractmethod
    def _many_params(self, lookups: Sequence[Lookup]) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


def as_utc(timestamp: dt.datetime) -> dt.datetime:
    """SQLite keeps no time zone; the loaders store UTC."""
    return timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=dt.UTC)


def _lookup_params(lookup: Lookup) -> dict[str, Any]:
    return {
        "plot_id": lookup.plot_id,
        "season": lookup.season,
        "season_year": lookup.season_year,
        "fallback": lookup.fallback,
        "preferred": lookup.preferred,
    }


# What `PredictionStore.report` is told.
TIMEOUT = "timeout"  # no answer within the timeout (a frozen or unreachable server)
CONNECTION_ERROR = "connection_error"  # could not connect, or the connection broke
QUERY_ERROR = "query_error"  # the server refused the query
RECONNECTED = "reconnected"  # a dead pooled connection replaced, the query sent again
EVENTS = (TIMEOUT, CONNECTION_ERROR, QUERY_ERROR, RECONNECTED)


def _ignore(_: str) -> None:
    return None


def _reason(error: BaseException) -> str:
    """A short, SQL-free reason for an error body or a health report."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (text or type(error).__name__)[:160]


UNAVAILABLE = "predictions database unavailable"


def _unavailable(reason: str) -> DatabaseError:
    return DatabaseError(f"{UNAVAILABLE}: {reason}")


class AsyncpgStore(PredictionStore):
    """PostgreSQL through asyncpg connections made on first use, so that the API starts (and
    reports 503 on /health) while the database is down.

    Not an ``asyncpg.Pool``: its release resets every connection (``RESET ALL`` and
    friends: one more round trip per query) on top of its acquire bookkeeping. Measured
    with ``nuru-yield bench api --compare`` (three runs, 200,000 rows; docs/DESIGN.md, "The
    API's fast paths"): a pool costs 2–18 µs more API CPU per request with gathered lookups
    and 80–110 µs more (plus 55–75 µs of PostgreSQL CPU) where lookups go alone, and its
    p50 at 1,000 requests/s was 1.6–4× this queue's. The API needs much less: up to
    ``max_size`` connections, each running one statement at a time, a broken one replaced.
    A LIFO queue holds idle connections above ``None`` slots ("may connect"), so warm
    connections are reused first and new ones are opened only under concurrency.

    A pooled connection found dead (the server restarted, a proxy dropped it) is replaced
    and the query sent once more on a fresh connection, so a restart costs clients nothing.
    Only that is retried: never an error of the query itself, nor a timeout.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, max_size: int, timeout: float) -> None:
        super().__init__(timeout)
        self._dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        self._idle: asyncio.LifoQueue[asyncpg.Connection | None] = asyncio.LifoQueue()
        for _ in range(max_size):
            self._idle.put_nowait(None)
        self._compiled: dict[int, tuple[str, list[str]]] = {}

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        connection = await asyncpg.connect(
            self._dsn,
            timeout=self.timeout,
            server_settings={
                "default_transaction_read_only": "on",
                # The client gives up after the timeout (`_fetch`); so does the server.
                "statement_timeout": str(round(self.timeout * 1000)),
                "application_name": "nuru-yield-api",
            },
        )
        try:
            await init_connection(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def _compile(self, query: Any) -> tuple[str, list[str]]:
        compiled = self._compiled.get(id(query))
        if compiled is None:
            from sqlalchemy.dialects.postgresql.asyncpg import dialect

            result = query.compile(dialect=dialect())
            compiled = self._compiled[id(query)] = (result.string, list(result.positiontup))
        return compiled

    async def _run(self, query: Any, params: dict[str, Any]) -> list[Row]:
        sql, names = self._compile(query)
        args = [params[name] for name in names]
        connection = await self._idle.get()
        try:
            if connection is not None:
                try:
                    return await connection.fetch(sql, *args)
                except _driver_errors() as error:
                    if not _connection_lost(error, connection):
                        raise
                    connection.terminate()  # dead while pooled: once more, on a fresh one
                    connection = None
                    self.report(RECONNECTED)
            connection = await self._connect()
            return await connection.fetch(sql, *args)
        except TimeoutError:  # asyncpg's own: reported as the deadline's (`_fetch`)
            if connection is not None:
                connection.terminate()
                connection = None
            raise
        except _driver_errors() as error:
            lost = connection is None or _connection_lost(error, connection)
            if connection is not None and lost:
                connection.terminate()
                connection = None
            self.report(CONNECTION_ERROR if lost else QUERY_ERROR)
            raise _unavailable(_reason(error)) from error
        except BaseException:
            # Cancelled mid-statement (timed out, or the client went away): the session's
            # state is unknown, and a server that did not answer may never.
            if connection is not None:
                connection.terminate()
                connection = None
            raise
        finally:
            self._idle.put_nowait(connection)

    def _many_params(self, lookups: Sequence[Lookup]) -> dict[str, Any]:
        return {
            "plot_ids": [lookup.plot_id for lookup in lookups],
            "seasons": [lookup.season for lookup in lookups],
            "season_years": [lookup.season_year for lookup in lookups],
            "fallbacks": [lookup.fallback for lookup in lookups],
            "preferreds": [lookup.preferred for lookup in lookups],
        }

    async def close(self) -> None:
        """Close the idle connections (at shutdown: none is in use then)."""
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection is not None:
                await connection.close()


def _connection_lost(error: BaseException, connection: asyncpg.Connection) -> bool:
    """Whether ``error`` means the connection is gone (rather than the query failing)."""
    import asyncpg

    gone = (
        OSError,
        asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and "closed mid-operation"
        asyncpg.AdminShutdownError,  # 57P01: the server is shutting down or restarting
        asyncpg.CrashShutdownError,
        asyncpg.CannotConnectNowError,
        # The server's goodbye arrived before its end of the connection: the protocol is
        # stuck ("another operation is in progress"), the query was never sent.
        asyncpg.exceptions.InternalClientError,
    )
    if isinstance(error, TimeoutError):  # no answer is not a lost connection: never retried
        return False
    return isinstance(error, gone) or connection.is_closed()


@functools.cache
def _driver_errors() -> tuple[type[Exception], ...]:
    """What asyncpg raises (imported on first use: the SQLite store does without it)."""
    import asyncpg

    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        OSError,
    )


async def init_connection(connection: asyncpg.Connection) -> None:
    """Decode ``json``/``jsonb`` columns (``top_drivers``) into Python values."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class SqliteStore(PredictionStore):
    """The embedded SQLite database, opened read-only; queries run in worker threads."""

    dialect = "sqlite"

    def __init__(self, url: str, *, timeout: float) -> None:
        super().__init__(timeout)
        self._engine = sa.create_engine(read_only_sqlite_url(url))

    async def _run(self, query: Any, params: dict[str, Any]) -> list[Row]:
        # A timed-out query's thread runs on to its end (SQLite's own busy timeout bounds it).
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self._fetch_sync, query, params)

    def _fetch_sync(self, query: Any, params: dict[str, Any]) -> list[Row]:
        try:
            with self._engine.connect() as connection:
                return [row._mapping for row in connection.execute(query, params)]
        except sa.exc.DBAPIError as error:
            # SQLite's operational errors are about the file: missing, locked, unreadable.
            opened = not isinstance(error, sa.exc.OperationalError)
            self.report(QUERY_ERROR if opened else CONNECTION_ERROR)
            raise _unavailable(_reason(error.orig or error)) from error

    def _many_params(self, lookups: Sequence[Lookup]) -> dict[str, Any]:
        rows = [
            [lookup.plot_id, lookup.season, lookup.season_year, lookup.fallback, lookup.preferred]
            for lookup in lookups
        ]
        return {"requests": json.dumps(rows)}

    async def close(self) -> None:
        self._engine.dispose()


def read_only_sqlite_url(url: str) -> sa.URL:
    """``sqlite:///path`` as a URI connection that SQLite itself refuses to write through."""
    parsed = sa.make_url(url)
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError(f"the API needs a SQLite file, not {url!r}")
    return parsed.set(database=f"file:{parsed.database}", query={"mode": "ro", "uri": "true"})


def open_store(url: str, *, pool_max: int = 10, timeout: float = 1.5) -> PredictionStore:
    """The store for a ``postgresql…://`` or ``sqlite:///`` URL (no connection is made yet)."""
    backend = sa.make_url(url).get_backend_name()
    if backend == "postgresql":
        return AsyncpgStore(url, max_size=pool_max, timeout=timeout)
    if backend == "sqlite":
        return SqliteStore(url, timeout=timeout)
    raise ConfigError(f"unsupported database URL for the API: {backend}")
