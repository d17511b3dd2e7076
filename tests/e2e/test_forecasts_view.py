"""The Forecasts view in a real browser, inside a real Airflow: ``airflow standalone`` with
the project's plugins and the simple auth manager asking for passwords; headless Chromium
logs in as a viewer on Airflow's own login page, opens "Forecasts" from the UI's navigation,
finds the county table and the charts rendered in the UI's frame, chooses another night
(the UI's address follows), and follows the night's scoring run to its run page, which the
UI itself then shows. The README's JSON example runs
against the same Airflow. The screenshot is kept next to the test's files
(``forecasts-view.png``, its path printed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.db import schema
from nuru_yield.db.engine import dispose_engines, get_engine
from nuru_yield.dev.airflow_standalone import standalone
from nuru_yield.dev.demo import DEMO_RUN_DATE
from nuru_yield.lake import Lake
from nuru_yield.names import FORECASTS_ROUTE
from tests.fixtures import browser
from tests.fixtures.browser import devtools_page
from tests.fixtures.counties import LATEST, NIGHTS, NO_SKILL, WITHHELD, World, bulletin_world

chromium = browser.chromium
pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
USERS = {"admin": ("admin", "admin-secret"), "forecaster": ("viewer", "viewer-secret")}
# The UI's frame holding the view, and a JavaScript expression over the view's document.
FRAME = "document.querySelector('iframe[title=\"Forecasts\"]')"


def in_view(expression: str) -> str:
    return (
        f"(doc => doc && doc.readyState === 'complete' && ({expression}))({FRAME}?.contentDocument)"
    )


@pytest.fixture
def world(nuru_home: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """The bulletins of a season in the predictions database Airflow's API server reads."""
    db_url = f"sqlite:///{nuru_home / 'predictions.db'}"
    lake = Lake(f"file://{nuru_home / 'lake'}")
    monkeypatch.setenv("PREDICTIONS_DB_URL", db_url)
    monkeypatch.setenv("LAKE_URL", lake.url)
    reset_settings()
    world = bulletin_world(db_url, lake, plots_per_county=400)
    yield world
    dispose_engines()


def test_a_viewer_logs_in_and_reads_the_forecasts_in_airflows_ui(
    chromium: str, world: World, nuru_home: Path, tmp_path: Path
) -> None:
    home = nuru_home / "airflow"
    home.mkdir(parents=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: password for name, (_, password) in USERS.items()}))
    auth = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{name}:{role}" for name, (role, _) in USERS.items()
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    with standalone(home, extra_env=auth, login=("admin", USERS["admin"][1])) as airflow:
        airflow.wait_for_dags(("batch_scoring",))
        # The night's scoring run (the DAG stays paused: the run is queued, never started).
        run_id = airflow.trigger("batch_scoring", {}, partition_key=LATEST.isoformat())
        with get_engine(world.db_url).begin() as connection:
            connection.execute(
                sa.update(schema.scoring_runs)
                .where(schema.scoring_runs.c.run_date == LATEST)
                .values(dag_run_id=run_id)
            )
        ui = f"http://127.0.0.1:{airflow.port}"

        with devtools_page(chromium, tmp_path, width=1440, height=2200) as page:
            page.navigate(f"{ui}/")
            page.wait_for("location.pathname.startsWith('/auth/login')", "Airflow's login page")
            page.wait_for("document.querySelector('input[name=password]')", "the login form")
            page.type_into("input[name=username]", "forecaster")
            page.type_into("input[name=password]", USERS["forecaster"][1])
            page.evaluate("document.querySelector('button[type=submit]').click()")
            navigation = f"document.querySelector('a[href$=\"plugin/{FORECASTS_ROUTE}\"]')"
            page.wait_for(navigation, "the Forecasts entry in the UI's navigation")

            page.evaluate(f"{navigation}.click()")
            page.wait_for(
                f"location.pathname.startsWith('/plugin/{FORECASTS_ROUTE}')", "the view's page"
            )
            rows = page.wait_for(
                in_view(
                    "(rows => rows.length && rows.map(row => [row.dataset.county, row.className]))"
                    "([...doc.querySelectorAll('table.counties tr[data-county]')])"
                ),
                "the county table in the UI's frame",
            )
            assert {county for county, _ in rows} == set(world.counties)
            assert dict(rows)[WITHHELD] == "withheld" and dict(rows)[NO_SKILL] == "no-skill"
            charts = page.wait_for(
                in_view(
                    "(figures => figures.length && Object.fromEntries(figures.map(figure => "
                    "[figure.classList[1], figure.querySelector('svg').getBoundingClientRect().width])))"
                    "([...doc.querySelectorAll('figure.chart')])"
                ),
                "the charts",
            )
            assert set(charts) == {"trajectory", "skill", "map"}
            assert min(charts.values()) > 300, charts  # drawn at a readable size
            shot = page.screenshot(tmp_path / "forecasts-view.png")
            print(f"screenshot of the Forecasts view: {shot}")

            # Another night, chosen in the view: the UI's address follows (a link to it).
            for night in (NIGHTS[3], LATEST):
                page.evaluate(
                    in_view(
                        f"(doc.querySelector('select[name=night]').value = '{night}', "
                        "doc.querySelector('form.night').submit(), true)"
                    )
                )
                page.wait_for(
                    in_view(f"doc.querySelector('h1').textContent.endsWith('{night}')"),
                    f"the view of {night}",
                )
                assert f"night={night}" in page.evaluate("location.search")

            # The run link moves Airflow's UI itself to the run's page (not a UI in the frame).
            link = f'a[data-airflow-route][href$="/runs/{quote(run_id, safe="")}"]'
            page.evaluate(f"{FRAME}.contentDocument.querySelector('{link}').click()")
            expected = f"/dags/batch_scoring/runs/{run_id}"
            page.wait_for(
                f"decodeURIComponent(location.pathname) === {json.dumps(expected)}",
                "Airflow's page of the night's scoring run",
            )
            page.wait_for(f"document.body.innerText.includes({json.dumps(run_id)})", "the run page")
            assert page.evaluate(f"{FRAME} === null"), "the run page opened inside the frame"

        body = _readme_json_example(airflow.port, "forecaster", USERS["forecaster"][1])
        assert body["night"] == LATEST.isoformat()
        assert sorted(row["county"] for row in body["counties"]) == sorted(world.counties)
        assert [run["run_id"] for run in body["dag_runs"]] == [run_id]


def _readme_json_example(port: int, user: str, password: str) -> dict:
    """The README's curl example of the view's JSON, run by bash against this Airflow (for
    the fixture's night instead of the demo's, which it names)."""
    section = README.read_text().split("\n## Forecasts in the Airflow UI\n", 1)[1]
    [script] = re.findall(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    demo_night = f"night={DEMO_RUN_DATE}"
    assert demo_night in script
    script = script.replace(demo_night, f"night={LATEST}")
    script = script.replace("localhost:8080", f"127.0.0.1:{port}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_USER": user, "AIRFLOW_PASSWORD": password},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
