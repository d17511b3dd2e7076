"""The compose file as compose sees it, with ``.env.example`` as its ``.env``."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.deploy.stack import COMPOSE_FILE, ENV_EXAMPLE, interpolate_tree, read_env_file


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it with .env.example as its .env."""
    return interpolate_tree(raw_compose, env_example, set())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]
