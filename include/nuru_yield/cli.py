"""The ``nuru-yield`` command (docs/DESIGN.md, "The `nuru-yield` command"). Each subcommand
calls the same library function as the matching Airflow task; heavy imports happen inside
the commands."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from nuru_yield.errors import LOG_FORMAT, MaskingFormatter, NuruError, mask_passwords
from nuru_yield.names import MODEL_NAME

app = typer.Typer(
    help="Nuru Yield: nightly in-season maize yield forecasts for smallholder plots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the predictions database.", no_args_is_help=True)
lake_app = typer.Typer(help="Manage the lake's layout.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks that print ratios against a bare baseline.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(lake_app, name="lake")
ingest_app = typer.Typer(
    help="Real data in: each product's files, as downloaded, into the raw contract.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(ingest_app, name="ingest")

DateOption = Annotated[
    dt.datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Run date, YYYY-MM-DD.")
]


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


@app.command("sample-data")
def sample_data(
    plots: Annotated[int, typer.Option(min=1, help="Number of plots.")] = 20_000,
    start_year: Annotated[int, typer.Option(min=1990, max=2100)] = 2020,
    end_year: Annotated[int, typer.Option(min=1990, max=2100)] = 2025,
    seed: Annotated[int, typer.Option()] = 42,
    formats: Annotated[
        str,
        typer.Option(
            help="contract: the raw contract into the lake; real: the world as the products "
            "a team downloads (CHIRPS, AgERA5, GeoJSON plots, plot-seasons and crop-cut "
            "CSVs, NDVI composites and a STAC catalog of Sentinel-2 scenes) under "
            "$NURU_HOME/sources, for `nuru-yield ingest`; both: the two.",
        ),
    ] = "contract",
) -> None:
    """Generate realistic raw data (plots, weather, NDVI, yields) into the lake, or as the
    real products."""
    from nuru_yield.dev.scratch import refuse_live_lake
    from nuru_yield.lake import Lake

    if end_year < start_year:
        raise typer.BadParameter("--end-year must not be before --start-year")
    if formats not in ("contract", "real", "both"):
        raise typer.BadParameter("--formats must be contract, real or both")
    refuse_live_lake("nuru-yield sample-data")  # synthetic plots must never replace real ones
    lake = Lake.from_settings()
    lake.check_writable()
    from nuru_yield.config import get_settings
    from nuru_yield.sample_data.formats import SOURCES_DIR
    from nuru_yield.sample_data.generator import generate_to_lake

    summary = generate_to_lake(
        lake,
        plots=plots,
        start_year=start_year,
        end_year=end_year,
        seed=seed,
        real_formats=get_settings().nuru_home / SOURCES_DIR if formats != "contract" else None,
        raw_contract=formats != "real",
    )
    typer.echo(summary.render())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate every table and view (idempotent)."""
    from nuru_yield.db.migrations import upgrade

    version = upgrade()
    typer.echo(f"database schema at version {version}")


@lake_app.command("upgrade")
def lake_upgrade() -> None:
    """Move raw NDVI files not yet split by plot bucket into buckets (idempotent)."""
    from nuru_yield.lake import Lake
    from nuru_yield.raw_layout import upgrade_lake

    moved = upgrade_lake(Lake.from_settings())
    for source, rows in moved:
        typer.echo(f"{source}: {rows:,} rows split into plot buckets")
    typer.echo(f"lake layout up to date ({len(moved)} file(s) moved)")


PathsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Files, folders, globs or s3:// prefixes; default: the product's configured source."
    ),
]
IngestDateOption = Annotated[
    dt.datetime | None,
    typer.Option(
        "--date",
        formats=["%Y-%m-%d"],
        help="Night YYYY-MM-DD: weather days after it are left for later (default: today, UTC).",
    ),
]
IngestShardsOption = Annotated[
    int | None, typer.Option(min=1, help="Shards (default INGEST_SHARDS).")
]


def _ingest(
    product: str,
    paths: list[str] | None,
    date: dt.datetime | None,
    shards: int | None,
    **settings: str,
) -> None:
    from nuru_yield.config import get_settings
    from nuru_yield.sources.ingest import ingest

    given = {name: value for name, value in settings.items() if value}
    result = ingest(
        product,
        paths or None,
        _night(date),
        settings=get_settings().model_copy(update=given),
        shards=shards,
    )
    for line in result.lines():
        typer.echo(line)


def _night(date: dt.datetime | None) -> dt.date:
    """The night of an ingest: ``--date``, else today (UTC)."""
    return date.date() if date else dt.datetime.now(dt.UTC).date()


@ingest_app.command("plots")
def ingest_plots(
    paths: PathsArgument = None,
    seasons: Annotated[
        str | None,
        typer.Option(help="Plot-seasons CSV keyed by plot id (default PLOT_SEASONS_SOURCE)."),
    ] = None,
    dem: Annotated[str | None, typer.Option(help="DEM GeoTIFF (default DEM_SOURCE).")] = None,
    counties: Annotated[
        str | None, typer.Option(help="County boundaries (default COUNTIES_SOURCE).")
    ] = None,
    shards: IngestShardsOption = None,
) -> None:
    """Plots and plot-seasons: GeoJSON, GeoParquet, zipped Shapefile or CSV (PLOTS_SOURCE)."""
    _ingest(
        "plots",
        paths,
        None,
        shards,
        plot_seasons_source=seasons or "",
        dem_source=dem or "",
        counties_source=counties or "",
    )


@ingest_app.command("chirps")
def ingest_chirps(
    paths: PathsArgument = None, date: IngestDateOption = None, shards: IngestShardsOption = None
) -> None:
    """CHIRPS v2.0 daily rain: yearly NetCDF or daily GeoTIFFs (CHIRPS_SOURCE)."""
    _ingest("chirps", paths, date, shards)


@ingest_app.command("agera5")
def ingest_agera5(
    paths: PathsArgument = None, date: IngestDateOption = None, shards: IngestShardsOption = None
) -> None:
    """AgERA5 daily temperature and solar radiation NetCDFs (AGERA5_SOURCE)."""
    _ingest("agera5", paths, date, shards)


@ingest_app.command("yields")
def ingest_yields(paths: PathsArgument = None, shards: IngestShardsOption = None) -> None:
    """Harvest labels: crop-cut survey CSV, or yields in kg/ha or t/ha (YIELDS_SOURCE)."""
    _ingest("yields", paths, None, shards)


@ingest_app.command("ndvi")
def ingest_ndvi(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="NDVI GeoTIFF/COG composites: files, folders, globs, s3:// prefixes "
            "(default NDVI_SOURCE)."
        ),
    ] = None,
    stac: Annotated[
        str | None,
        typer.Option(
            help="A STAC API URL or a static catalog.json, local or s3:// (default NDVI_STAC_URL)."
        ),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option(help="The STAC collection of Sentinel-2 L2A scenes (NDVI_STAC_COLLECTION)."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Days before the night the STAC search covers (NDVI_STAC_DAYS)."),
    ] = None,
    date: IngestDateOption = None,
    shards: IngestShardsOption = None,
) -> None:
    """NDVI per plot from MODIS-style composites or Sentinel-2 L2A scenes through STAC:
    one file per acquisition and plot bucket; scenes already ingested are skipped."""
    from nuru_yield.sources.ndvi import ingest_ndvi as ingest

    result = ingest(
        paths or None, stac=stac, collection=collection, days=days, run_date=_night(date),
        shards=shards,
    )  # fmt: skip
    typer.echo(result.render())


@ingest_app.command("all")
def ingest_all(date: DateOption, shards: IngestShardsOption = None) -> None:
    """Every product with a configured source, in order: what the raw_ingestion DAG runs."""
    from nuru_yield.sources.ingest import ingest_all as run

    lines = run(date.date(), shards=shards)
    for line in lines:
        typer.echo(line)
    if not lines:
        typer.echo(
            "no source configured (PLOTS_SOURCE, CHIRPS_SOURCE, AGERA5_SOURCE, YIELDS_SOURCE, "
            "NDVI_SOURCE, NDVI_STAC_URL)"
        )


@app.command()
def features(
    date: DateOption,
    shards: Annotated[
        int | None, typer.Option(min=1, help="Shards (default FEATURE_SHARDS).")
    ] = None,
) -> None:
    """Materialize season-to-date plot features for one date."""
    from nuru_yield.features.materialize import FEATURES
    from nuru_yield.nightly import run_night

    result = run_night(FEATURES, date.date(), shards=shards)
    typer.echo(
        f"{result.run_date}: {result.rows:,} plot-seasons, {result.rejected:,} rejected; "
        f"{result.features_uri}"
    )


@app.command()
def train(date: DateOption) -> None:
    """Train candidates, evaluate, and run the promotion gate."""
    from nuru_yield.training.pipeline import train as run_training

    summary = run_training(date.date())
    typer.echo(summary.render())
    if summary.skill_error is not None:
        raise typer.Exit(1)


@app.command()
def skill(
    date: DateOption,
    version: Annotated[
        str | None, typer.Option(help="Model version (default: the @champion).")
    ] = None,
) -> None:
    """County hindcast skill of a model version: leave-one-season-out at 30/60/90/120 days."""
    from nuru_yield.lake import Lake
    from nuru_yield.names import training_set_path
    from nuru_yield.training.hindcast import county_skill
    from nuru_yield.training.pipeline import build_training_set

    lake = Lake.from_settings()
    if not lake.exists(training_set_path(date.date())):
        build_training_set(date.date(), lake)
    typer.echo(county_skill(date.date(), lake=lake, version=version).render())


@app.command()
def backtest(
    date: DateOption,
    recipe: Annotated[
        list[str] | None,
        typer.Option(help="Recipes to compare (repeatable); default: all of them."),
    ] = None,
) -> None:
    """Hold-out and next-season accuracy of model recipes (constraints) as of a date."""
    from nuru_yield.training.backtest import RECIPES
    from nuru_yield.training.backtest import backtest as run_backtest

    unknown = sorted(set(recipe or ()) - set(RECIPES))
    if unknown:
        raise typer.BadParameter(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    typer.echo(run_backtest(date.date(), recipes=recipe or tuple(RECIPES)).render())


@app.command()
def promote(
    run_id: Annotated[str, typer.Option()],
    model_name: Annotated[str, typer.Option()] = MODEL_NAME,
    stage: Annotated[str, typer.Option()] = "Production",
) -> None:
    """Register a run's model and move the alias its stage maps to."""
    from nuru_yield.models.registry import promote_run

    typer.echo(promote_run(run_id, model_name, stage, actor="cli").summary())


@app.command()
def rollback(model_name: Annotated[str, typer.Option()] = MODEL_NAME) -> None:
    """Restore the `previous` champion."""
    from nuru_yield.models.registry import rollback as run_rollback

    typer.echo(run_rollback(model_name, actor="cli").summary())


@app.command()
def score(
    date: DateOption,
    shards: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Score every in-progress plot-season for one date (champion, and challenger in shadow)."""
    from nuru_yield.nightly import run_night
    from nuru_yield.scoring.run import SCORING

    published = run_night(SCORING, date.date(), shards=shards)
    challenger = published.challenger_version
    typer.echo(
        f"{published.run_date}: {published.plots_scored:,} plots scored with "
        f"v{published.model_version}"
        + (f" (+ challenger v{challenger})" if challenger else "")
        + f", {published.rows:,} rows published, log {published.prediction_log_uri}"
    )
    if published.counties_error is not None:
        typer.echo(f"error: {published.counties_error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"county bulletin: {published.county_rows} county-seasons, {published.bulletin_uri}")


@app.command()
def drift(date: DateOption) -> None:
    """Drift statistics, realized accuracy and the retraining trigger for one date."""
    from nuru_yield.monitoring.monitor import run_monitoring

    typer.echo(run_monitoring(date.date()).render())


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the read-only prediction API (docs at /docs)."""
    from nuru_yield.serving.app import run

    run(host=host, port=port, workers=workers)


@app.command()
def demo(
    plots: Annotated[int, typer.Option(min=100)] = 20_000,
    seed: Annotated[int, typer.Option()] = 42,
    serve: Annotated[bool, typer.Option(help="Serve the API at the end.")] = True,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The API's port (checked before anything runs).")
    ] = 8000,
    stall_minutes: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Give up on a DAG run after this long without progress: no task state "
            "change, no task log growing, no task process using CPU (default 10).",
        ),
    ] = None,
) -> None:
    """Sample data as the real products, database, the five DAGs through Airflow (raw
    ingestion first), a summary, then the API."""
    from nuru_yield.dev.demo import run_demo

    run_demo(plots=plots, seed=seed, serve=serve, port=port, stall_minutes=stall_minutes)


WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        help="Where the scratch space goes (default: the system's temporary directory).",
        file_okay=False,
    ),
]


@bench_app.command("features")
def bench_features(
    plots: Annotated[int, typer.Option(min=1)] = 1_000_000, workdir: WorkdirOption = None
) -> None:
    """Time feature materialization against a hand-written DuckDB query."""
    from nuru_yield.dev.bench.features import run

    run(plots, workdir)


@bench_app.command("train")
def bench_train(
    plots: Annotated[int, typer.Option(min=100)] = 20_000, workdir: WorkdirOption = None
) -> None:
    """Time training by phase against one bare LightGBM fit on the same rows."""
    from nuru_yield.dev.bench.train import run

    run(plots, workdir)


@bench_app.command("ingest")
def bench_ingest(
    ndvi: Annotated[
        bool,
        typer.Option(
            "--ndvi",
            help="NDVI from rasters instead: a MODIS composite over Kenya (per shard and "
            "whole) and one Sentinel-2 scene against bare exactextract.",
        ),
    ] = False,
    plots: Annotated[int, typer.Option(min=1)] = 1_000_000,
    shards: Annotated[
        int | None,
        typer.Option(min=1, help="Shards (default INGEST_SHARDS; 8 with --ndvi), run one by one."),
    ] = None,
    s2_pixels: Annotated[
        int, typer.Option(min=64, help="--ndvi: side of the Sentinel-2 scene in 10 m pixels.")
    ] = 10_980,
    workdir: WorkdirOption = None,
) -> None:
    """Time raw ingestion against bare baselines measured in the same run: a year of
    Kenya-wide CHIRPS + AgERA5 against bare numpy sampling, or (--ndvi) NDVI rasters
    against bare exactextract."""
    if ndvi:
        from nuru_yield.dev.bench.ndvi import run

        run(plots, shards or 8, workdir, s2_pixels=s2_pixels)
        return
    from nuru_yield.dev.bench.ingest import run_bench

    run_bench(plots, workdir, shards)


@bench_app.command("scoring")
def bench_scoring(
    plots: Annotated[int, typer.Option(min=1)] = 1_000_000,
    shards: Annotated[int, typer.Option(min=1)] = 1,
    db_url: Annotated[
        str | None, typer.Option(help="Admin URL of a PostgreSQL server; default: a throwaway one.")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="production (default) or tiny (for memory scaling at millions of plots)."
        ),
    ] = "production",
    interactions: Annotated[
        str,
        typer.Option(help="pairwise (default) or free: the MODEL_INTERACTIONS to measure."),
    ] = "pairwise",
) -> None:
    """Time batch scoring against bare predict + bare ingest, and a naive pandas/pyfunc/to_sql."""
    from nuru_yield.dev.bench.scoring import run_bench

    run_bench(plots, shards=shards, db_url=db_url, model=model, interactions=interactions)


@bench_app.command("night")
def bench_night(
    plots: Annotated[int, typer.Option(min=1)] = 1_000_000,
    shards: Annotated[
        int | None, typer.Option(min=1, help="Default: one per 250,000 plot-seasons.")
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, help="Shards run at a time.")] = 1,
    db_url: Annotated[
        str | None, typer.Option(help="Admin URL of a PostgreSQL server; default: a throwaway one.")
    ] = None,
    model: Annotated[str, typer.Option(help="production (default) or tiny.")] = "production",
    workdir: WorkdirOption = None,
) -> None:
    """Time one whole night (features, scoring, publish) in shards, per step and shard."""
    from nuru_yield.dev.bench.night import run_bench

    run_bench(plots, shards, parallel, db_url=db_url, model=model, workdir=workdir)


@bench_app.command("api")
def bench_api(
    rows: Annotated[int, typer.Option(min=1)] = 1_000_000,
    seconds: Annotated[int, typer.Option(min=1, help="Length of each load phase.")] = 30,
    db_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL admin URL to load into; default: a throwaway cluster."),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            help="Also measure the API without each of its fast paths (bare ASGI /predict, "
            "own connection queue, gathered lookups) and as a plain FastAPI route on "
            "asyncpg.create_pool."
        ),
    ] = False,
) -> None:
    """Drive the API under load against a bare Starlette endpoint."""
    from nuru_yield.dev.bench import emit
    from nuru_yield.dev.bench.api import run_bench

    emit(run_bench(rows=rows, seconds=seconds, db_url=db_url, compare=compare).as_dict())


def _usage_message(error: typer.TyperException) -> str:
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    param = getattr(error, "param", None)
    hint = getattr(param, "opts", None)
    if hint and hint[0] not in message:
        message = f"{hint[0]}: {message}"
    return message.splitlines()[0]


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    """Entry point: expected failures print one line and exit non-zero, never a traceback.

    ``command``: run that one subcommand as a program of its own, named after the running
    script (the seed's promotion script: its usage line shows no subcommand)."""
    program = typer.main.get_command(app)
    if command is not None:
        _configure()
        program = program.commands[command]  # type: ignore[attr-defined]
    try:
        result = program.main(args=argv, standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as error:  # usage errors: bad option values, unknown commands
        typer.echo(f"error: {mask_passwords(_usage_message(error))}", err=True)
        sys.exit(getattr(error, "exit_code", 2))
    except NuruError as error:
        typer.echo(f"error: {mask_passwords(str(error))}", err=True)
        sys.exit(error.exit_code)
    if isinstance(result, int) and result:  # typer.Exit(code) with standalone_mode=False
        sys.exit(result)
