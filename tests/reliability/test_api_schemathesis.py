"""schemathesis against a real ``nuru-yield serve`` process on PostgreSQL, as the issue's
reviewer ran it: every check (``--checks all``), positive and negative data
(``--mode all``), and every phase including the stateful one (responses feeding later
requests). No check may fail, and no request may get a 5xx.

The suite runs a small number of examples per operation; the full run is
``make fuzz-api`` (``API_FUZZ_EXAMPLES=1000``), which prints the same summary.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_api_support import API_KEY, PredictionsDb, api_server, known_rows

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))  # per operation and phase
SEED = int(os.environ.get("API_FUZZ_SEED", "20250501"))


def summarize(report: Path) -> dict[str, object]:
    """Cases, statuses and failed checks from schemathesis' NDJSON event stream."""
    statuses: collections.Counter[int] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or finished["status"] == "skip":
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            statuses[interaction["response"]["status_code"]] += 1
            case = recorder["cases"].get(case_id, {}).get("value", {})
            modes[case.get("meta", {}).get("generation", {}).get("mode", "?")] += 1
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if check["status"] == "failure":
                    failed[check["name"]] += 1
    return {
        "requests": sum(statuses.values()),
        "negative_cases": modes["negative"],
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "statuses": dict(sorted(statuses.items())),
        "failed_checks": dict(failed),
    }


@pytest.mark.postgres
def test_schemathesis_all_checks_all_phases_finds_nothing(postgres_url: str, tmp_path: Path):
    db = PredictionsDb(postgres_url)
    db.load(known_rows())
    db.add_promotions()
    db.add_counties()
    with api_server(
        tmp_path, PREDICTIONS_DB_URL=postgres_url, API_KEY=API_KEY, API_RATE_LIMIT_PER_MINUTE=0
    ) as server:
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.base_url}/openapi.json",
            "--checks=all",
            "--mode=all",
            "--phases=examples,coverage,fuzzing,stateful",
            f"--max-examples={EXAMPLES}",
            f"--seed={SEED}",
            f"--header=X-API-Key: {API_KEY}",
            "--suppress-health-check=all",
            "--workers=1",
            "--report=ndjson",
            f"--report-dir={tmp_path / 'report'}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        server_errors = server.errors()
    summary = summarize(next((tmp_path / "report").glob("*.ndjson")))
    print(f"\nschemathesis, {EXAMPLES} examples per operation, seed {SEED}: {json.dumps(summary)}")
    assert result.returncode == 0, result.stdout[-6000:]
    assert summary["server_errors"] == 0
    assert summary["failed_checks"] == {}
    assert summary["negative_cases"] > 0  # hostile data was really sent
    assert "Traceback" not in server_errors, server_errors[-3000:]
    db.engine.dispose()
