"""`make demo` / `nuru-yield demo`: build the whole product on the embedded defaults.

Each step calls the same library function as its CLI command and DAG task.
"""

from __future__ import annotations

import logging
import time

import typer

from nuru_yield.config import get_settings
from nuru_yield.lake import RAW_PLOTS, Lake

log = logging.getLogger(__name__)

DEMO_START_YEAR = 2020
DEMO_END_YEAR = 2025


def run_demo(plots: int, seed: int) -> None:
    """Generate sample data (once), migrate the database, print where everything is."""
    from nuru_yield.db import upgrade
    from nuru_yield.sample_data import generate_to_lake

    settings = get_settings()
    lake = Lake.from_settings(settings)
    lake.check_writable()
    started = time.monotonic()

    if lake.exists(RAW_PLOTS):
        typer.echo(f"[1/2] sample data already in {lake.uri('raw')} (delete NURU_HOME to regenerate)")
    else:
        typer.echo(f"[1/2] generating sample data: {plots:,} plots, {DEMO_START_YEAR}-{DEMO_END_YEAR}")
        summary = generate_to_lake(
            lake, plots=plots, start_year=DEMO_START_YEAR, end_year=DEMO_END_YEAR, seed=seed
        )
        typer.echo(summary.render())

    version = upgrade()
    typer.echo(f"[2/2] predictions database at schema version {version}: {settings.predictions_db_url}")
    typer.echo(f"demo ready in {time.monotonic() - started:.0f}s; all local state under {settings.nuru_home}")
