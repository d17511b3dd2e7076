"""The production stack's files as the deploy tests read them: their paths, compose-style
variable interpolation, and helpers shared by the tests of this folder."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
API_REQUIREMENTS = REPO / "docker" / "requirements-api.in"
DASHBOARDS = REPO / "docker" / "grafana" / "dashboards"
DATASOURCES = REPO / "docker" / "grafana" / "provisioning" / "datasources"
INIT_SQL_SCRIPT = REPO / "docker" / "postgres" / "init-databases.sh"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


# --- compose-style variable interpolation ------------------------------------------------


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset or empty."""


def _closing_brace(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unclosed '${{' in {text!r}")


def _expand(body: str, env: Mapping[str, str], used: set[str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.DOTALL)
    if not match:
        raise ValueError(f"bad variable expression ${{{body}}}")
    name, operator, argument = match.groups()
    used.add(name)
    value = env.get(name)
    if operator is None:
        return value or ""
    if operator.endswith("?"):
        if value is None or (operator == ":?" and not value):
            raise MissingVariable(f"{name}: {argument}")
        return value
    present = bool(value) if operator.startswith(":") else value is not None
    alternative = interpolate(argument, env, used)
    if operator.endswith("-"):
        return value if present else alternative
    return alternative if present else ""


def interpolate(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `${VAR:+alt}`, `$$`."""
    used = set() if used is None else used
    out: list[str] = []
    index = 0
    while index < len(text):
        char, following = text[index], text[index + 1 : index + 2]
        if char != "$":
            out.append(char)
            index += 1
        elif following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            end = _closing_brace(text, index + 1)
            out.append(_expand(text[index + 2 : end], env, used))
            index = end + 1
        elif name := re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[index + 1 :]):
            used.add(name.group())
            out.append(env.get(name.group(), ""))
            index += 1 + len(name.group())
        else:
            out.append(char)
            index += 1
    return "".join(out)


def interpolate_tree(node: Any, env: Mapping[str, str], used: set[str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, used) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env, used) for value in node]
    if isinstance(node, str):
        return interpolate(node, env, used)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# --- reading the stack's files -----------------------------------------------------------


def vendored_schema(name: str) -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath(name).read_text())


def validation_errors(document: Any, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def argv_of(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def pipeline_services(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services.items()
        if service.get("build", {}).get("target") == "pipeline"
    }


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def dashboard_queries() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield panel["title"], target


def runnable_sql(sql: str) -> str:
    """Grafana's macros replaced by plain SQL, so PostgreSQL can check the query."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN '1900-01-01' AND '2100-01-01'", sql)
    assert "$" not in sql, f"unhandled Grafana macro in {sql}"
    return sql
