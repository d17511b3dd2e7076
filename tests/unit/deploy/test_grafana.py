"""Grafana's provisioning and dashboards: one data source, the read-only role, the schema's
tables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy.stack import DATASOURCES, REPO, dashboard_queries, environment_of


def test_grafana_provisioning_is_consistent(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    sources = [
        source
        for path in DATASOURCES.glob("*.yaml")
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    uids = {source["uid"] for source in sources}
    (postgres,) = sources
    assert postgres["user"] == "nuru_api" and postgres["jsonData"]["database"] == "nuru"
    assert postgres["url"].split(":")[0] in services
    placeholders = set(re.findall(r"\$\{?(\w+)", json.dumps(sources)))
    assert placeholders and placeholders <= set(environment_of(grafana))
    queries = list(dashboard_queries())
    assert len(queries) >= 5
    for title, target in queries:
        assert target["datasource"]["uid"] in uids, title
    mounts = dict(volume.split(":")[1::-1][:2] for volume in grafana["volumes"])
    home = Path(environment_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (REPO / mounts[str(home.parent)] / home.name).is_file()
    provider = yaml.safe_load(
        (REPO / "docker/grafana/provisioning/dashboards/nuru-yield.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] in mounts


def test_dashboard_reads_only_tables_of_the_schema() -> None:
    from nuru_yield.db.schema import metadata

    known = set(metadata.tables) | {"latest_predictions"}
    panels_by_table: dict[str, list[str]] = {}
    for title, target in dashboard_queries():
        tables = re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", target["rawSql"], re.IGNORECASE)
        assert tables and set(tables) <= known, f"{title}: {tables}"
        for table in tables:
            panels_by_table.setdefault(table, []).append(title)
    assert {"predictions", "drift_reports", "model_performance"} <= set(panels_by_table)
