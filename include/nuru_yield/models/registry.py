"""The MLflow side of training: the experiment, candidate runs, registered versions,
aliases (``champion``, ``previous``, ``challenger``) and the audit of every decision.

MLflow keeps no history of alias moves, so each decision is also an append-only row of
``model_promotions`` (docs/DESIGN.md, "Database"). The row is inserted in a database transaction that
commits only after the aliases have moved: a failed move leaves no row claiming it.

MLflow failures are one line each (:func:`registry_errors`): a tracking server that does not
answer is a :class:`~nuru_yield.errors.RegistryUnavailableError` within seconds — the client
is probed before use and its HTTP requests are bounded (``MLFLOW_REQUEST_TIMEOUT_SECONDS``,
``MLFLOW_REQUEST_MAX_RETRIES``) instead of MLflow's default of minutes of retries — and a
corrupt store or a missing artifact is a :class:`~nuru_yield.errors.RegistryError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from nuru_yield.config import Settings, get_settings
from nuru_yield.errors import NuruError, RegistryError, RegistryUnavailableError
from nuru_yield.models.metadata import MODEL_ARTIFACT, checked_metadata
from nuru_yield.names import CHALLENGER, CHAMPION, EXPERIMENT_NAME, MODEL_NAME, PREVIOUS

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# The seed's registry stages, mapped onto the aliases that replaced them. The stage is set
# too when an alias moves, so the seed's `get_latest_versions(stages=["Production"])` finds
# the champion.
STAGE_ALIASES = {"production": CHAMPION, "staging": CHALLENGER}
ALIAS_STAGES = {CHAMPION: "Production", CHALLENGER: "Staging"}


def mlflow_client() -> MlflowClient:
    """A client on the configured tracking/registry URI, also set for the fluent API.

    Before it is returned, the store is checked: a tracking server must answer its health
    endpoint within ``MLFLOW_REQUEST_TIMEOUT_SECONDS``, a SQLite store must be a SQLite
    file. Raises :class:`RegistryUnavailableError` / :class:`RegistryError` otherwise.
    """
    import mlflow

    settings = get_settings()
    uri = settings.mlflow_tracking_uri
    _bound_http_requests(settings)
    # MLflow draws a progress bar for every model it uploads or downloads: a screenful of
    # noise in `nuru-yield train` and in task logs for files that take a second. Its own
    # variable wins when set.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        _check_sqlite_store(database, uri)
    elif uri.startswith(("http://", "https://")):
        _probe_server(uri, settings.mlflow_request_timeout_seconds)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _bound_http_requests(settings: Settings) -> None:
    """MLflow reads its HTTP limits from the environment at every request; its defaults
    (120 s timeout, 7 retries with exponential backoff) keep a caller waiting for minutes
    on a server that is down. MLflow's own variables win when they are set."""
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_seconds)
    )
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_request_max_retries)
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def _shown(uri: str) -> str:
    """``uri`` without the user and password it may carry."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _check_sqlite_store(database: Path, uri: str) -> None:
    """A file that exists but is not a SQLite database (truncated, overwritten) is corrupt."""
    try:
        with database.open("rb") as handle:
            header = handle.read(16)
    except FileNotFoundError:
        return  # MLflow creates it
    except OSError as error:
        raise RegistryError(f"cannot read the MLflow store {uri}: {error.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise RegistryError(f"the MLflow store {uri} is corrupt: not a SQLite database")


def _probe_server(uri: str, timeout: float) -> None:
    """One request to the tracking server's health endpoint, without retries."""
    import requests

    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.Timeout:
        reason = f"no answer within {timeout:g}s"
    except requests.RequestException as error:
        reason = _connection_reason(error)
    else:
        if response.status_code not in (502, 503, 504):
            return
        reason = f"HTTP {response.status_code} {response.reason}"
    raise RegistryUnavailableError(f"MLflow tracking server {_shown(uri)} unreachable: {reason}")


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _connection_reason(error: BaseException) -> str:
    """'connection refused', 'name or service not known', … from a requests/urllib3 error."""
    found = _ERRNO.search(str(error))
    if found:
        return found.group(1).strip().lower()
    if "timed out" in str(error).lower():
        return "timed out"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _unreachable(error: BaseException) -> bool:
    import requests

    for link in _chain(error):
        if isinstance(link, requests.ConnectionError | requests.Timeout | ConnectionError):
            return True
        if getattr(link, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
        text = str(link)
        if "Max retries exceeded" in text or "failed with timeout exception" in text:
            return True
    return False


@contextlib.contextmanager
def registry_errors(action: str) -> Iterator[None]:
    """Turn an MLflow failure inside the block into one line naming ``action`` and the
    store: :class:`RegistryUnavailableError` when the tracking server did not answer (a
    later try may succeed), :class:`RegistryError` otherwise (a corrupt store, missing or
    unreadable artifacts: retrying cannot help). Errors of this package pass unchanged;
    the original traceback is logged at DEBUG level (``nuru-yield -v``)."""
    try:
        yield
    except NuruError:
        raise
    except Exception as error:
        uri = _shown(get_settings().mlflow_tracking_uri)
        log.debug("%s failed", action, exc_info=True)
        if _unreachable(error):
            reason = _connection_reason(error)
            raise RegistryUnavailableError(
                f"{action}: MLflow tracking server {uri} unreachable: {reason}"
            ) from None
        raise RegistryError(f"{action} failed ({uri}): {_first_line(error)}") from None


def experiment_id(client: MlflowClient) -> str:
    """The id of ``YieldPrediction_MultiModel``, created with ``MLFLOW_ARTIFACT_ROOT`` as its
    artifact location if it does not exist yet."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    root = get_settings().mlflow_artifact_root
    location = root if "://" in root else Path(root).resolve().as_uri()
    try:
        return client.create_experiment(EXPERIMENT_NAME, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is None:
            raise
        return experiment.experiment_id


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None (read from the registered model: version
    searches do not always return aliases, and a missing alias is a different error code
    on each backend)."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = aliases.get(alias)
    return None if version is None else str(version)


def resolve_model_uri(client: MlflowClient, uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` → (name, version)."""
    path = uri.removeprefix("models:/")
    if "@" in path:
        name, alias = path.split("@", 1)
        version = alias_version(client, name, alias)
        if version is None:
            raise RegistryError(f"registered model {name!r} has no @{alias} version")
        return name, version
    name, _, version = path.rpartition("/")
    if not name or not version.isdigit():
        raise RegistryError(f"expected models:/<name>@<alias> or models:/<name>/<version>: {uri}")
    return name, version


def register_run_model(client: MlflowClient, run_id: str, name: str) -> str:
    """Register the model logged by ``run_id`` under ``name`` (reusing the version already
    registered from that run, if any); returns the version. Only a model logged by
    training (with the feature order and intervals scoring needs) is accepted."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise RegistryError(f"no MLflow run {run_id!r} ({error.error_code})") from None
    logged = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT}'",
        max_results=1,
    )
    checked_metadata(Model.load(logged[0].model_uri).metadata if logged else None, f"run {run_id}")
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(max(int(v.version) for v in existing))
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model = logged[0]
    version = client.create_model_version(
        name, source=model.model_uri, run_id=run_id, model_id=model.model_id
    )
    return str(version.version)


@dataclass(frozen=True)
class Decision:
    """One recorded registry decision (a ``model_promotions`` row)."""

    model_name: str
    alias: str
    decision: str  # promoted | refused | rolled_back | unchanged (not recorded)
    reason: str
    candidate_version: str | None
    previous_version: str | None
    candidate_metrics: dict[str, Any] | None = None
    champion_metrics: dict[str, Any] | None = None

    @property
    def alias_moved(self) -> bool:
        return self.decision in ("promoted", "rolled_back")

    def summary(self) -> str:
        """One line for a person: what happened to which version, and why."""
        if self.decision == "unchanged":
            return f"{self.model_name} v{self.candidate_version}: unchanged — {self.reason}"
        before = f"v{self.previous_version}" if self.previous_version else "none"
        return (
            f"{self.model_name} v{self.candidate_version}: {self.decision} "
            f"(@{self.alias} was {before}) — {self.reason}"
        )


def record_decision(
    client: MlflowClient,
    decision: Decision,
    *,
    move: Callable[[], None] | None = None,
    dag_run_id: str | None = None,
    actor: str = "gate",
) -> Decision:
    """Append the audit row, tag the candidate version, then run ``move`` (the alias
    change); the row commits only if all of that succeeded."""
    # Here, not at the top: loading a model (scoring, monitoring and its alert notifier
    # import this module) needs no database layer (SQLAlchemy and its driver, ~0.2 s).
    from nuru_yield.db.engine import database_errors, get_engine, writer
    from nuru_yield.db.schema import model_promotions

    decided_at = dt.datetime.now(dt.UTC)
    row = {
        "decided_at": decided_at,
        "model_name": decision.model_name,
        "candidate_version": decision.candidate_version,
        "previous_version": decision.previous_version,
        "alias": decision.alias,
        "decision": decision.decision,
        "reason": decision.reason,
        "candidate_metrics": decision.candidate_metrics,
        "champion_metrics": decision.champion_metrics,
        "dag_run_id": dag_run_id,
        "actor": actor,
    }
    tags = {
        "nuru.decision": decision.decision,
        "nuru.decision_reason": decision.reason,
        "nuru.decision_alias": decision.alias,
        "nuru.decided_at": decided_at.isoformat(timespec="seconds"),
        "nuru.decided_by": actor,
        "nuru.compared_with_version": decision.previous_version or "",
    }
    if decision.candidate_metrics:
        tags["nuru.candidate_rmse"] = f"{decision.candidate_metrics['rmse']:.3f}"
    if decision.champion_metrics:
        tags["nuru.champion_rmse"] = f"{decision.champion_metrics['rmse']:.3f}"
    engine = get_engine()
    with (
        database_errors(engine, f"recording the {decision.decision} decision"),
        writer(engine).begin() as connection,
    ):
        connection.execute(model_promotions.insert().values(**row))
        if decision.candidate_version is not None:
            for key, value in tags.items():
                client.set_model_version_tag(
                    decision.model_name, decision.candidate_version, key, value
                )
        if move is not None:
            move()
    # Callers report it (the CLI prints the summary, the DAG task logs it): once, not twice.
    log.debug("recorded: %s", decision.summary())
    return decision


def set_stage(client: MlflowClient, name: str, version: str, alias: str) -> None:
    """Give ``version`` the registry stage of ``alias`` (``champion`` → Production,
    ``challenger`` → Staging), archiving the version that had it. Stages are deprecated in
    MLflow and the aliases decide what is served; this keeps code written for stages (the
    seed's deployment guide) finding the same version."""
    stage = ALIAS_STAGES.get(alias)
    if stage is None or client.get_model_version(name, version).current_stage == stage:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*stage")
        client.transition_model_version_stage(name, version, stage, archive_existing_versions=True)


def _move_champion(client: MlflowClient, name: str, version: str, old: str | None) -> None:
    """``champion`` → ``version``; the old champion keeps ``previous``."""
    if old is not None and old != version:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    set_stage(client, name, version, CHAMPION)


def promote_version(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    alias: str = CHAMPION,
    reason: str,
    candidate_metrics: dict[str, Any] | None = None,
    champion_metrics: dict[str, Any] | None = None,
    dag_run_id: str | None = None,
    actor: str = "gate",
) -> Decision:
    """Point ``alias`` at ``version`` (for ``champion``, the old one becomes ``previous``)
    and record it. A version that already holds the alias is left alone and reported as
    ``unchanged`` (nothing recorded; only a missing stage is set)."""
    old = alias_version(client, name, alias)
    if old == version:
        set_stage(client, name, version, alias)
        return Decision(
            model_name=name,
            alias=alias,
            decision="unchanged",
            reason=f"v{version} is already @{alias}; nothing to do",
            candidate_version=version,
            previous_version=old,
        )

    def move() -> None:
        if alias == CHAMPION:
            _move_champion(client, name, version, old)
        else:
            client.set_registered_model_alias(name, alias, version)
            set_stage(client, name, version, alias)

    decision = Decision(
        model_name=name,
        alias=alias,
        decision="promoted",
        reason=reason,
        candidate_version=version,
        previous_version=old,
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
    )
    return record_decision(client, decision, move=move, dag_run_id=dag_run_id, actor=actor)


def promote_run(
    run_id: str,
    model_name: str = MODEL_NAME,
    stage: str = "Production",
    *,
    actor: str = "cli",
    dag_run_id: str | None = None,
) -> Decision:
    """The seed script's operation: register the run's model under ``model_name`` and move
    the alias its stage maps to (``Production`` → ``champion``, ``Staging`` →
    ``challenger``), recorded like any promotion. No gate: this is the manual override."""
    alias = STAGE_ALIASES.get(stage.lower())
    if alias is None:
        raise RegistryError(
            f"unknown stage {stage!r}: use Production (alias @{CHAMPION}) "
            f"or Staging (alias @{CHALLENGER})"
        )
    with registry_errors(f"promoting run {run_id}"):
        client = mlflow_client()
        version = register_run_model(client, run_id, model_name)
        run_metrics = client.get_run(run_id).data.metrics
        return promote_version(
            client,
            model_name,
            version,
            alias=alias,
            reason=f"manual promotion of run {run_id} (stage {stage} → @{alias})",
            candidate_metrics={k: v for k, v in run_metrics.items() if "/" not in k} or None,
            dag_run_id=dag_run_id,
            actor=actor,
        )


def rollback(
    model_name: str = MODEL_NAME, *, actor: str = "cli", dag_run_id: str | None = None
) -> Decision:
    """Restore ``previous`` as ``champion``; the demoted version becomes ``previous`` (so a
    second rollback undoes the first)."""
    with registry_errors(f"rolling back {model_name}"):
        client = mlflow_client()
        restored = alias_version(client, model_name, PREVIOUS)
        if restored is None:
            raise RegistryError(f"{model_name} has no @{PREVIOUS} version to roll back to")
        demoted = alias_version(client, model_name, CHAMPION)

        def move() -> None:
            _move_champion(client, model_name, restored, demoted)

        decision = Decision(
            model_name=model_name,
            alias=CHAMPION,
            decision="rolled_back",
            reason=f"rollback: v{restored} restored as @{CHAMPION}, v{demoted} becomes @{PREVIOUS}",
            candidate_version=restored,
            previous_version=demoted,
        )
        return record_decision(client, decision, move=move, dag_run_id=dag_run_id, actor=actor)
