"""`nuru_yield.airflow_settings`: the Astro-format file turned into Airflow's import files and
CLI calls. Airflow's own loaders and CLI parser read what it writes; a stand-in `airflow`
executable records the calls (a real apply needs a migrated metadata DB: see the DAG tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nuru_yield.airflow_settings import (
    SECTIONS,
    apply,
    import_command,
    load,
    login_hint,
    main,
    parse,
    write_import_files,
)
from nuru_yield.errors import ConfigError, NuruError

DOCUMENT: dict[str, Any] = {
    "airflow": {
        "connections": [
            {
                "conn_id": "db",
                "conn_type": "postgres",
                "conn_host": "localhost",
                "conn_port": 5432,
                "conn_schema": "nuru",
                "conn_login": "nuru",
                "conn_password": "secret",
                "conn_extra": {},
            },
            {
                "conn_id": "lake",
                "conn_type": "aws",
                "conn_login": "key",
                "conn_password": "s3cret",
                "conn_extra": {"endpoint_url": "http://localhost:9000"},
            },
            {"conn_id": "by_uri", "conn_uri": "postgresql://u:p@h:5433/d"},
        ],
        "variables": [
            {"variable_name": "plain", "variable_value": "text"},
            {"variable_name": "structured", "variable_value": {"a": 1}},
        ],
        "pools": [{"pool_name": "scoring", "pool_slot": 4, "pool_description": "shards"}],
    }
}


def _with(section: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"airflow": {**DOCUMENT["airflow"], section: entries}}


def test_parse_maps_astro_keys_to_airflow_import_fields() -> None:
    settings = parse(DOCUMENT)
    assert settings.connections["db"] == {
        "conn_type": "postgres",
        "host": "localhost",
        "port": 5432,
        "schema": "nuru",
        "login": "nuru",
        "password": "secret",
    }
    assert json.loads(settings.connections["lake"]["extra"]) == {
        "endpoint_url": "http://localhost:9000"
    }
    assert settings.connections["by_uri"] == "postgresql://u:p@h:5433/d"
    assert settings.variables == {"plain": "text", "structured": '{"a": 1}'}
    assert settings.pools == {
        "scoring": {"slots": 4, "description": "shards", "include_deferred": False}
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"connections": []}, "top-level 'airflow:'"),
        ({"airflow": {"conections": []}}, "unknown sections"),
        ({"airflow": {"pools": {"name": 1}}}, "must be a list"),
        (_with("connections", [{"conn_type": "postgres"}]), "has no 'conn_id'"),
        (_with("connections", [{"conn_id": "x"}]), "has no 'conn_type'"),
        (_with("connections", [{"conn_id": "x", "conn_type": "a", "host": "h"}]), "unknown keys"),
        (
            _with("connections", [{"conn_id": "x", "conn_type": "a"}] * 2),
            "'x' is defined twice",
        ),
        (_with("pools", [{"pool_name": "p", "pool_slot": 0}]), "pool_slot >= 1"),
        (_with("variables", [{"variable_value": "v"}]), "has no 'variable_name'"),
    ],
)
def test_parse_rejects_malformed_documents_in_one_line(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse(document)
    assert "\n" not in str(error.value)


def test_load_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("airflow: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="top-level 'airflow:'"):
        load(empty)


def test_airflow_reads_the_import_files_back(tmp_path: Path) -> None:
    from airflow.secrets.local_filesystem import load_connections_dict, load_variables

    files = write_import_files(parse(DOCUMENT), tmp_path)
    assert set(files) == set(SECTIONS)
    connections = load_connections_dict(str(files["connections"]))
    db, lake, by_uri = connections["db"], connections["lake"], connections["by_uri"]
    assert (db.conn_type, db.host, db.port, db.schema, db.login) == (
        "postgres",
        "localhost",
        5432,
        "nuru",
        "nuru",
    )
    assert db.password == "secret"
    assert lake.extra_dejson == {"endpoint_url": "http://localhost:9000"}
    assert (by_uri.conn_type, by_uri.port, by_uri.schema) == ("postgres", 5433, "d")
    assert load_variables(str(files["variables"])) == {"plain": "text", "structured": '{"a": 1}'}
    # `airflow pools import` accepts an entry only with both of these keys.
    pools = json.loads(files["pools"].read_text())
    assert {"slots", "description"} <= set(pools["scoring"])


def test_import_commands_are_valid_airflow_cli_calls(tmp_path: Path) -> None:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for section in SECTIONS:
        command = import_command(section, tmp_path / f"{section}.json")
        args = parser.parse_args(command[1:])
        assert args.func.__name__ == f"{section[:-1] if section == 'pools' else section}_import"
    assert "--overwrite" in import_command("connections", tmp_path / "c.json")


FAKE_AIRFLOW = """#!{python}
import json, os, pathlib, sys
if os.environ.get("FAKE_AIRFLOW_FAIL"):
    sys.exit("boom: database is locked")
with open(os.environ["FAKE_AIRFLOW_LOG"], "a") as log:
    log.write(json.dumps([sys.argv[1:], json.loads(pathlib.Path(sys.argv[-1]).read_text())]) + "\\n")
"""


@pytest.fixture
def fake_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    executable = tmp_path / "airflow"
    executable.write_text(FAKE_AIRFLOW.format(python=sys.executable))
    executable.chmod(0o755)
    monkeypatch.setenv("FAKE_AIRFLOW_LOG", str(tmp_path / "calls.jsonl"))
    return executable


def _calls(tmp_path: Path) -> list[list[Any]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_apply_runs_one_import_per_non_empty_section(tmp_path: Path, fake_airflow: Path) -> None:
    settings = parse(_with("variables", []))
    summary = apply(settings, airflow=str(fake_airflow))
    calls = _calls(tmp_path)
    assert [argv[:2] for argv, _ in calls] == [["connections", "import"], ["pools", "import"]]
    assert calls[0][1] == settings.connections and calls[1][1] == settings.pools
    assert summary == ["connections: by_uri, db, lake", "pools: scoring"]


def test_apply_of_one_section_leaves_the_others(tmp_path: Path, fake_airflow: Path) -> None:
    apply(parse(DOCUMENT), sections=["pools"], airflow=str(fake_airflow))
    assert [argv[0] for argv, _ in _calls(tmp_path)] == ["pools"]


def test_a_failing_airflow_call_is_one_clear_line(
    tmp_path: Path,
    fake_airflow: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_AIRFLOW_FAIL", "1")
    with pytest.raises(NuruError, match=r"'.*airflow connections import' failed: boom"):
        apply(parse(DOCUMENT), airflow=str(fake_airflow))
    settings_file = tmp_path / "airflow_settings.yaml"
    settings_file.write_text(json.dumps(DOCUMENT))
    with pytest.raises(SystemExit) as exit_info:
        main([str(settings_file), "--airflow", str(fake_airflow)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_main_applies_and_prints_the_login(
    tmp_path: Path,
    fake_airflow: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings_file = tmp_path / "airflow_settings.yaml"
    settings_file.write_text(json.dumps(DOCUMENT))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", raising=False)
    (tmp_path / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "pw1"}')
    main([str(settings_file), "--only", "pools", "--airflow", str(fake_airflow), "--print-login"])
    out = capsys.readouterr().out
    assert "pools: scoring" in out and "user admin / password pw1" in out
    assert len(_calls(tmp_path)) == 1


def test_login_hint_follows_the_configured_password_file(tmp_path: Path) -> None:
    assert login_hint({"AIRFLOW_HOME": str(tmp_path)}) is None
    configured = tmp_path / "passwords.json"
    configured.write_text('{"admin": "s3cret"}')
    environ = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(configured),
    }
    assert login_hint(environ) == "user admin / password s3cret"
