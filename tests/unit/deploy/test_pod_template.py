"""The KubernetesExecutor pod template (documented, not run on a cluster here): a valid pod
with a ``base`` container whose variables are real settings."""

from __future__ import annotations

from typing import Any

import yaml

from tests.unit.deploy.stack import REPO, validation_errors


def test_pod_template_is_a_pod_with_a_base_container_and_real_settings() -> None:
    from nuru_yield.config import Settings

    pod = yaml.safe_load((REPO / "docker" / "pod_template.yaml").read_text())
    assert validation_errors(pod, _POD_SCHEMA) == []
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "base"  # what the KubernetesExecutor requires
    assert pod["spec"]["restartPolicy"] == "Never"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
    fields = {name.upper() for name in Settings.model_fields}
    assert {name for name in env if not name.startswith("AIRFLOW__")} <= fields
    assert env["FEATURE_SHARDS"] == env["SCORING_SHARDS"]
    mounts = {mount["name"] for mount in container["volumeMounts"]}
    assert mounts <= {volume["name"] for volume in pod["spec"]["volumes"]}
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and float(limit[:-2]) <= 2  # the per-shard goal


# The parts of a Kubernetes Pod the template uses (types and required keys).
_POD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "image"],
                        "properties": {
                            "env": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "value"],
                                    "properties": {"value": {"type": "string"}},
                                },
                            },
                            "resources": {"type": "object"},
                        },
                    },
                },
                "volumes": {"type": "array", "items": {"required": ["name"]}},
            },
        },
    },
}
