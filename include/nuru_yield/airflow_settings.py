"""Apply ``airflow_settings.yaml`` (the Astro CLI format) to a plain Airflow installation.

Only the Astro CLI reads that file by itself. Here ``make airflow`` (Airflow standalone) and
the production ``airflow-init`` job apply it with this module::

    python -m nuru_yield.airflow_settings airflow_settings.yaml [--only pools] [--print-login]

It does not import Airflow (only ``dags/`` and ``orchestration.py`` may): :func:`parse` turns
the YAML into Airflow's own import payloads, and :func:`apply` writes them to files and runs
``airflow connections import --overwrite``, ``airflow variables import -a overwrite`` and
``airflow pools import`` — idempotent, and three CLI start-ups instead of one per entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuru_yield.errors import ConfigError, NuruError

SECTIONS: tuple[str, ...] = ("connections", "variables", "pools")

# Astro CLI connection keys -> fields of Airflow's connection import format.
_CONNECTION_FIELDS = {
    "conn_type": "conn_type",
    "conn_host": "host",
    "conn_schema": "schema",
    "conn_login": "login",
    "conn_password": "password",
    "conn_port": "port",
    "conn_extra": "extra",
    "conn_description": "description",
}


@dataclass(frozen=True)
class AirflowSettings:
    """The three sections, each already in the shape Airflow's ``… import`` commands read."""

    connections: dict[str, Any]
    variables: dict[str, str]
    pools: dict[str, dict[str, Any]]

    def payload(self, section: str) -> dict[str, Any]:
        """The import file content of one section."""
        return getattr(self, section)


def _entries(document: Mapping[str, Any], section: str) -> list[Mapping[str, Any]]:
    entries = document.get(section) or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"airflow settings: 'airflow.{section}' must be a list of mappings")
    return entries


def _required(entry: Mapping[str, Any], key: str, section: str) -> Any:
    if entry.get(key) in (None, ""):
        raise ConfigError(f"airflow settings: an entry of 'airflow.{section}' has no '{key}'")
    return entry[key]


def _connection(entry: Mapping[str, Any]) -> Any:
    unknown = set(entry) - set(_CONNECTION_FIELDS) - {"conn_id", "conn_uri"}
    if unknown:
        raise ConfigError(
            f"airflow settings: connection {entry.get('conn_id')!r} has unknown keys "
            f"{sorted(unknown)}"
        )
    if entry.get("conn_uri"):
        return entry["conn_uri"]
    _required(entry, "conn_type", "connections")
    fields = {_CONNECTION_FIELDS[k]: v for k, v in entry.items() if k in _CONNECTION_FIELDS}
    if isinstance(fields.get("extra"), Mapping):
        fields["extra"] = json.dumps(fields["extra"], sort_keys=True)
    return {k: v for k, v in fields.items() if v not in (None, "", "{}")}


def parse(document: Mapping[str, Any]) -> AirflowSettings:
    """Validate an Astro-format document (``airflow: {connections, variables, pools}``)."""
    airflow = document.get("airflow") if isinstance(document, Mapping) else None
    if not isinstance(airflow, Mapping):
        raise ConfigError("airflow settings: the file needs a top-level 'airflow:' mapping")
    unknown = set(airflow) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"airflow settings: unknown sections {sorted(unknown)}")

    connections: dict[str, Any] = {}
    for entry in _entries(airflow, "connections"):
        conn_id = str(_required(entry, "conn_id", "connections"))
        if conn_id in connections:
            raise ConfigError(f"airflow settings: connection {conn_id!r} is defined twice")
        connections[conn_id] = _connection(entry)

    variables: dict[str, str] = {}
    for entry in _entries(airflow, "variables"):
        name = str(_required(entry, "variable_name", "variables"))
        value = entry.get("variable_value", "")
        variables[name] = value if isinstance(value, str) else json.dumps(value)

    pools: dict[str, dict[str, Any]] = {}
    for entry in _entries(airflow, "pools"):
        name = str(_required(entry, "pool_name", "pools"))
        slots = _required(entry, "pool_slot", "pools")
        if not isinstance(slots, int) or slots < 1:
            raise ConfigError(f"airflow settings: pool {name!r} needs pool_slot >= 1")
        pools[name] = {
            "slots": slots,
            "description": str(entry.get("pool_description", "")),
            "include_deferred": False,
        }
    return AirflowSettings(connections=connections, variables=variables, pools=pools)


def load(path: str | os.PathLike[str]) -> AirflowSettings:
    """Read and validate an ``airflow_settings.yaml``."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"airflow settings: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"airflow settings: {path} is not valid YAML: {error}") from None
    return parse(document or {})


def import_command(section: str, file: Path, airflow: str = "airflow") -> list[str]:
    """The ``airflow`` CLI call that loads one section's import file (idempotently)."""
    commands = {
        "connections": [airflow, "connections", "import", "--overwrite", str(file)],
        "variables": [airflow, "variables", "import", "-a", "overwrite", str(file)],
        "pools": [airflow, "pools", "import", str(file)],
    }
    return commands[section]


def default_airflow_binary() -> str:
    """The ``airflow`` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("airflow")
    return str(beside) if beside.exists() else (shutil.which("airflow") or "airflow")


def write_import_files(
    settings: AirflowSettings, directory: Path, sections: Sequence[str] = SECTIONS
) -> dict[str, Path]:
    """Write each non-empty section as the JSON file its ``airflow … import`` reads."""
    files = {}
    for section in sections:
        payload = settings.payload(section)
        if payload:
            files[section] = directory / f"{section}.json"
            files[section].write_text(json.dumps(payload, indent=2))
    return files


def apply(
    settings: AirflowSettings,
    sections: Sequence[str] = SECTIONS,
    airflow: str | None = None,
) -> list[str]:
    """Load the chosen sections into Airflow's metadata DB; returns one summary line each.

    Empty sections are skipped. The metadata DB must be migrated (``airflow db migrate``).
    """
    airflow = airflow or default_airflow_binary()
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nuru-airflow-settings-") as tmp:
        for section, file in write_import_files(settings, Path(tmp), sections).items():
            command = import_command(section, file, airflow)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
                raise NuruError(f"'{' '.join(command[:3])}' failed: {lines[-1]}")
            summary.append(f"{section}: {', '.join(sorted(settings.payload(section)))}")
    return summary


def login_hint(environ: Mapping[str, str] = os.environ) -> str | None:
    """The simple auth manager's login for the UI, if Airflow has written its password file."""
    home = Path(environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    configured = environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    file = Path(configured) if configured else home / "simple_auth_manager_passwords.json.generated"
    try:
        passwords = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return "; ".join(f"user {user} / password {pw}" for user, pw in sorted(passwords.items()))


def build_parser() -> argparse.ArgumentParser:
    """``python -m nuru_yield.airflow_settings FILE [--only SECTION …] [--print-login]``."""
    parser = argparse.ArgumentParser(prog="python -m nuru_yield.airflow_settings")
    parser.add_argument("file", help="airflow_settings.yaml (Astro CLI format)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable")
    parser.add_argument("--airflow", help="the airflow executable (default: this venv's)")
    parser.add_argument(
        "--print-login", action="store_true", help="print the UI login (dev only: a secret)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Apply the file; failures print one line and exit non-zero."""
    args = build_parser().parse_args(argv)
    try:
        for line in apply(load(args.file), args.only or SECTIONS, args.airflow):
            print(f"airflow settings applied — {line}")
    except NuruError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if args.print_login:
        hint = login_hint()
        print(
            f"Airflow UI login: {hint}"
            if hint
            else "Airflow UI login: printed by `airflow standalone` on its first start"
        )


if __name__ == "__main__":
    main()
