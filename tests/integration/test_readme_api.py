"""The README's API examples find data after `make demo`: every plot and county they ask for
is in progress on the demo's night, and every `as_of` date is on or after it."""

from __future__ import annotations

import datetime as dt
import inspect
import re
from pathlib import Path

from nuru_yield.dev.demo import DEMO_END_YEAR, DEMO_RUN_DATE, DEMO_START_YEAR
from nuru_yield.features.materialize import materialize
from nuru_yield.lake import Lake
from nuru_yield.names import features_path

README = Path(__file__).resolve().parents[2] / "README.md"
# What `make demo` runs: `nuru-yield demo` with its default plots and seed.
DEMO_PLOTS, DEMO_SEED = 20_000, 42


def _api_examples() -> str:
    section = README.read_text().split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", section, flags=re.S))
    assert "curl" in commands
    return commands


def test_readme_api_examples_ask_for_what_the_demo_scored(nuru_home: Path) -> None:
    from nuru_yield.cli import demo
    from nuru_yield.sample_data.generator import generate_to_lake

    defaults = inspect.signature(demo).parameters
    assert (defaults["plots"].default, defaults["seed"].default) == (DEMO_PLOTS, DEMO_SEED)
    examples = _api_examples()
    plots = {int(n) for n in re.findall(r'"plot_id": (\d+)', examples)}
    plots |= {int(n) for n in re.findall(r"/predictions/(\d+)", examples)}
    as_of = [dt.date.fromisoformat(d) for d in re.findall(r"as_of=(\d{4}-\d{2}-\d{2})", examples)]
    assert plots and as_of
    assert min(as_of) >= DEMO_RUN_DATE, as_of

    lake = Lake.from_settings()
    generate_to_lake(
        lake, plots=DEMO_PLOTS, start_year=DEMO_START_YEAR, end_year=DEMO_END_YEAR, seed=DEMO_SEED
    )
    materialize(DEMO_RUN_DATE, lake=lake)
    features = lake.read_parquet(features_path(DEMO_RUN_DATE), columns=["plot_id", "county"])
    scored = set(features["plot_id"].to_pylist())
    assert plots <= scored, sorted(plots - scored)
    counties = set(re.findall(r"/counties/([^/?' ]+)/forecast", examples))
    assert counties and counties <= set(features["county"].to_pylist()), counties
