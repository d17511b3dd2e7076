"""The CI workflow: a valid GitHub workflow that runs `make test` with PostgreSQL 15 and Redis."""

from __future__ import annotations

import yaml

from tests.unit.deploy.stack import WORKFLOW, validation_errors, vendored_schema


def test_ci_workflow_runs_make_test_with_postgresql_15_and_redis() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    assert validation_errors(workflow, vendored_schema("github-workflows.json")) == []
    (job,) = workflow["jobs"].values()
    assert job["env"]["CI"] == "true"
    steps = " ".join(step.get("run", "") for step in job["steps"])
    assert "postgresql-15" in steps and "/usr/lib/postgresql/15/bin" in steps
    assert "redis-server" in steps
    assert job["steps"][-1]["run"] == "make test"
    (python,) = [step for step in job["steps"] if "setup-python" in step.get("uses", "")]
    assert python["with"]["python-version"] == "3.11"
