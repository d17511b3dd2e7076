"""The scratch space of every development command: each benchmark, the demo, `make airflow`.

A development command must never touch the lake, registry or database a deployment is
configured with. Isolating ``NURU_HOME`` is not enough: with ``MLFLOW_TRACKING_URI`` and
``LAKE_URL`` set, as in every configured deployment, a benchmark once registered its
synthetic model in the real registry, moved ``@champion`` to it (no gate, no audit row) and
wrote its synthetic features into the real lake; the next night scored every plot with it.

So every development command runs inside :func:`scratch_space`::

    from nuru_yield.dev.scratch import scratch_space

    with scratch_space("bench train") as space:  # a fresh temporary home, removed after
        ...  # every setting points inside space.home, for spawned processes too

    with scratch_space("demo", home=Path(".nuru")) as space:  # a named home, kept
        ...

For the block, the environment (:data:`SCRATCH_VARIABLES`, inherited by every process the
block starts) points every target inside the scratch home: ``NURU_HOME``; ``LAKE_URL``
(``file://HOME/lake``); ``MLFLOW_TRACKING_URI`` and MLflow's own ``MLFLOW_REGISTRY_URI``
(``sqlite:///HOME/mlflow.db``) and ``MLFLOW_ARTIFACT_ROOT``; ``PREDICTIONS_DB_URL`` and
``API_DB_URL`` (``sqlite:///HOME/predictions.db``, or ``predictions_db_url``: a scratch
database the caller made, e.g. on a throwaway PostgreSQL); the ``S3_*`` credentials,
emptied, so nothing can reach a bucket; and ``ALERT_CHANNEL=off``, so a drift run alerts
nobody. ``extra`` adds the command's own settings. The cached settings, database engines and
MLflow's process-wide URIs are cleared on entry and on exit; the environment is restored on
exit. A bench with a target of its own (``--db-url``: the PostgreSQL server to make its
scratch database on) keeps that one explicit option.

A named ``home`` that this module did not make (no :data:`MARKER` file in it), and an
explicit ``predictions_db_url``, are checked first (:func:`refuse_live_targets`): one that
holds a champion alias or published nights is refused with one line
(:class:`ScratchTargetError`), whatever the command.

``python -m nuru_yield.dev.scratch --home DIR --purpose WHAT -- COMMAND …`` runs a command
inside a named scratch home (what `make airflow` does). ``nuru-yield sample-data``, which
writes synthetic raw data into the configured lake, refuses one with published nights
(:func:`refuse_live_lake`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuru_yield.errors import ConfigError, mask_passwords

# A home holding this file was made by a development command and may be reused by one.
MARKER = ".nuru-scratch"


class ScratchTargetError(ConfigError):
    """A development command was pointed at a lake, registry or database in use (exit 2)."""


@dataclass(frozen=True)
class ScratchSpace:
    """Where a development command works: its home and the variables set for it."""

    home: Path
    environment: dict[str, str]


def scratch_environment(home: Path, predictions_db_url: str | None = None) -> dict[str, str]:
    """The values of :data:`SCRATCH_VARIABLES` for a scratch space in ``home``."""
    home = home.resolve()
    registry = f"sqlite:///{home / 'mlflow.db'}"
    database = predictions_db_url or f"sqlite:///{home / 'predictions.db'}"
    return {
        "NURU_HOME": str(home),
        "LAKE_URL": f"file://{home / 'lake'}",
        "MLFLOW_TRACKING_URI": registry,
        "MLFLOW_REGISTRY_URI": registry,
        "MLFLOW_ARTIFACT_ROOT": str(home / "mlartifacts"),
        "PREDICTIONS_DB_URL": database,
        "API_DB_URL": database,
        "S3_BUCKET_NAME": "",
        "S3_ENDPOINT_URL": "",
        "S3_ACCESS_KEY": "",
        "S3_SECRET_KEY": "",
        "ALERT_CHANNEL": "off",
    }


# The settings (and MLflow's own variable) that name where things are written.
SCRATCH_VARIABLES = tuple(scratch_environment(Path("/scratch")))


@contextlib.contextmanager
def scratch_space(
    purpose: str,
    *,
    home: Path | None = None,
    parent: Path | None = None,
    predictions_db_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Iterator[ScratchSpace]:
    """Point every setting at a scratch space for the block (see the module docstring).

    ``home``: a named home, created if missing and kept afterwards; without it, a fresh
    temporary directory (in ``parent``, default the system's temporary directory) removed
    on exit. ``purpose`` names the command in the marker and in a refusal.
    """
    temporary = home is None
    if home is None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", purpose.lower()).strip("-")
        home = Path(tempfile.mkdtemp(prefix=f"nuru-{slug}-", dir=parent))
    home = home.expanduser().resolve()
    values = {**scratch_environment(home, predictions_db_url), **(extra or {})}
    saved = {name: os.environ.get(name) for name in values}
    uris = _mlflow_uris()
    os.environ.update(values)
    _clear_caches()
    try:
        if not temporary and not (home / MARKER).exists():
            refuse_live_targets(purpose)
        elif predictions_db_url is not None:
            refuse_live_targets(purpose, ("database",))
        home.mkdir(parents=True, exist_ok=True)
        if not (home / MARKER).exists():
            (home / MARKER).write_text(
                f"A scratch space of nuru-yield's development commands (made by {purpose}).\n"
            )
        yield ScratchSpace(home, values)
    finally:
        _clear_caches(uris)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if temporary:
            shutil.rmtree(home, ignore_errors=True)


def refuse_live_targets(
    purpose: str, targets: Sequence[str] = ("lake", "registry", "database")
) -> None:
    """Raise :class:`ScratchTargetError` when, of ``targets``, the configured lake holds
    published nights, the registry a ``champion`` alias, or the predictions database
    published rows. Reads only; creates nothing (a missing SQLite file or lake folder holds
    nothing)."""
    from nuru_yield.config import get_settings

    settings = get_settings()
    checks = {
        "lake": (settings.lake_url, _published_nights),
        "registry": (settings.mlflow_tracking_uri, _champions),
        "database": (settings.predictions_db_url, _published_rows),
    }
    for kind in targets:
        target, holds = checks[kind]
        found = holds()
        if found:
            raise ScratchTargetError(
                mask_passwords(
                    f"refusing to run {purpose} on the {kind} {target}: it holds {found}, and "
                    "a development command works only in a scratch space of its own (leave "
                    "the target out, or name an empty one)"
                )
            )


def refuse_live_lake(purpose: str) -> None:
    """For a command that writes synthetic data into the configured lake (``nuru-yield
    sample-data``): refuse a lake that holds published nights, unless it is the own lake of
    a scratch space (the demo's)."""
    from nuru_yield.config import get_settings

    settings = get_settings()
    home = settings.nuru_home
    if (home / MARKER).exists() and settings.lake_url == scratch_environment(home)["LAKE_URL"]:
        return
    refuse_live_targets(purpose, ("lake",))


def _published_nights() -> str:
    from nuru_yield.lake import Lake
    from nuru_yield.names import FEATURES, PREDICTION_LOG

    lake = Lake.from_settings()
    if not lake.is_s3 and not lake.root.exists():
        return ""
    nights = sorted({*lake.partition_dates(FEATURES), *lake.partition_dates(PREDICTION_LOG)})
    return f"published nights ({_dates(nights)})" if nights else ""


def _champions() -> str:
    from nuru_yield.config import get_settings

    uri = get_settings().mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return ""
    from nuru_yield.models.registry import alias_version, mlflow_client, registry_errors
    from nuru_yield.names import CHAMPION

    with registry_errors("checking the registry for a champion"):
        client = mlflow_client()
        held = [
            f"{model.name} v{version}"
            for model in client.search_registered_models()
            if (version := alias_version(client, model.name, CHAMPION)) is not None
        ]
    return f"@{CHAMPION} ({', '.join(held)})" if held else ""


def _published_rows() -> str:
    import sqlalchemy as sa

    from nuru_yield.config import get_settings
    from nuru_yield.db.engine import database_errors, get_engine

    url = sa.make_url(get_settings().predictions_db_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return ""
    engine = get_engine()
    with database_errors(engine, "checking the database for published nights"):
        if not sa.inspect(engine).has_table("predictions"):
            return ""
        with engine.connect() as connection:
            nights = connection.execute(
                sa.text("SELECT DISTINCT run_date FROM predictions ORDER BY run_date")
            ).scalars()
            found = [str(night) for night in nights]
    return f"published predictions ({_dates(found)})" if found else ""


def _dates(values: Sequence[Any]) -> str:
    shown = ", ".join(str(value) for value in values[:3])
    return shown + (f" and {len(values) - 3} more" if len(values) > 3 else "")


# --- caches of the settings, engines and MLflow --------------------------------------------
# Where MLflow keeps the URIs that `mlflow.set_tracking_uri` / `set_registry_uri` set for
# the whole process (a set URI wins over the environment).
_MLFLOW_URIS = (
    ("mlflow.tracking._tracking_service.utils", "_tracking_uri"),
    ("mlflow.tracking._model_registry.utils", "_registry_uri"),
)


def _mlflow_uris() -> dict[str, Any]:
    """MLflow's process-wide URIs now, where MLflow is loaded."""
    return {
        module: getattr(sys.modules[module], attribute)
        for module, attribute in _MLFLOW_URIS
        if module in sys.modules
    }


def _clear_caches(uris: Mapping[str, Any] | None = None) -> None:
    """Forget the settings and the engines built from them, and set MLflow's process-wide
    URIs to ``uris`` (unset, so that MLflow reads the environment, where not given): nothing
    keeps pointing at the targets of before."""
    from nuru_yield.config import reset_settings
    from nuru_yield.db.engine import dispose_engines

    reset_settings()
    dispose_engines()
    for module, attribute in _MLFLOW_URIS:
        if module in sys.modules:
            setattr(sys.modules[module], attribute, (uris or {}).get(module))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m nuru_yield.dev.scratch --home DIR --purpose WHAT -- COMMAND …``: run
    ``COMMAND`` in the scratch space ``DIR`` (it replaces this process)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--purpose", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("a command to run is needed")
    try:
        with scratch_space(arguments.purpose, home=arguments.home):
            os.execvpe(command[0], command, dict(os.environ))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except OSError as error:  # the command is not there, or not executable
        print(f"error: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
