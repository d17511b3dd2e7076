"""NDVI rasters into the raw contract's plot-bucketed NDVI: a sharded night by plot bucket
(:mod:`nuru_yield.nightly`; docs/DESIGN.md, "Raw input contract" and "NDVI from rasters").

* :func:`prepare_ndvi` finds the scenes: composites (the files given, else ``NDVI_SOURCE``:
  :mod:`nuru_yield.sources.modis`) and Sentinel-2 L2A items of a STAC API or static catalog
  over the plots, acquired within ``NDVI_STAC_DAYS`` before the night (``NDVI_STAC_URL``,
  ``NDVI_STAC_COLLECTION``: :mod:`nuru_yield.sources.sentinel2`). Scenes dated after the
  night are left for a later one. Scenes of one product and date are one acquisition, whose
  ledger (``sources/ndvi/{product}-{YYYYMMDD}.json``) records the scenes it was made from:
  an acquisition whose ledger holds every scene found is skipped (a scene already ingested
  is skipped by its id); a new scene of a recorded date (a tile that came late) recomputes
  the date from all its scenes, the recorded ones too. Each scene to read is checked whole
  (its reader's ``check``): a bad one is quarantined with one reason
  (``raw/rejected/ndvi.parquet``), and when their share of the scenes found passes
  ``VALIDATION_MAX_BAD_SHARE`` the night fails, writing nothing. The acquisitions go to the
  prepare report (a year of scenes is too large for XCom).
* :func:`ingest_ndvi_shard` computes, for the plots of its plot buckets
  (:func:`shard_buckets`: a contiguous range, disjoint from the other shards'), every
  acquisition's rows (:func:`~nuru_yield.sources.ndvi_rasters.acquisition_rows`) and stages
  them, one part per acquisition and bucket, the scenes (id → source) in the part's
  metadata (``nuru_yield.sources``, the key of the stored weather months). A scene that
  fails here after passing the check fails the shard, in one line: shards never disagree
  on an acquisition's scenes.
* :func:`publish_ndvi` moves every part to
  ``raw/ndvi/year=YYYY/plot_bucket=BBB/{product}-{YYYYMMDD}.parquet``, then writes each
  acquisition's ledger, then the quarantine. Each file moves in one step and the ledger
  comes last: a run killed anywhere leaves the previous rows, and the next night redoes
  what no ledger records. The same scenes give the same rows (sorted, no time stamps).

:data:`NDVI` names the three steps: ``nuru-yield ingest ndvi`` runs them in one process, the
``raw_ingestion`` DAG as tasks (after the plots: NDVI is computed for each plot).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import NDVI_PLOT_BUCKETS, NDVI_SCHEMA
from nuru_yield.errors import DataValidationError, MissingInputError
from nuru_yield.lake import Lake
from nuru_yield.nightly import (
    Night,
    NightPlan,
    NightResult,
    clear_parts,
    place,
    read_reports,
    run_night,
    stamped,
    write_report,
)
from nuru_yield.raw_layout import ndvi_bucket
from nuru_yield.sources.ndvi_rasters import (
    BadScene,
    Plots,
    Quarantined,
    Scene,
    acquisition_rows,
)
from nuru_yield.sources.tables import REASON, SOURCE
from nuru_yield.sources.tables import REJECTED_SCHEMA as REJECTED
from nuru_yield.sources.weather import MANIFEST_KEY
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

PRODUCT = "ndvi"
# How far around the plots' points a STAC search looks (plots are polygons of a few ha).
_SEARCH_MARGIN_DEGREES = 0.05


@dataclass(frozen=True)
class NdviPlan(NightPlan):
    """What every step of one run shares: counts for messages (the acquisitions themselves
    are in the prepare report) and how many buckets there are to split."""

    scenes: int = 0
    skipped: int = 0
    later: int = 0
    acquisitions: int = 0
    quarantined: int = 0
    configured: bool = False

    STEP = "ndvi ingest"
    PREFIX = names.SOURCES_NDVI


@dataclass(frozen=True)
class NdviShardResult(StepResult):
    """What one shard staged: its plot buckets and rows."""

    shard: int
    buckets: list[int]
    rows: int


@dataclass(frozen=True)
class NdviResult(NightResult):
    """What a run published."""

    scenes: int = 0
    skipped: int = 0
    later: int = 0
    acquisitions: int = 0
    rows: int = 0
    quarantined: int = 0
    configured: bool = True

    def render(self) -> str:
        return (
            f"ndvi: {self.scenes} scene(s) found, {self.skipped} already ingested"
            + (f", {self.later} after {self.run_date}" if self.later else "")
            + f"; {self.acquisitions} acquisition(s) written, {self.rows:,} plot rows; "
            f"{self.quarantined} scene(s) quarantined"
        )

    def lines(self) -> list[str]:
        """What ``nuru-yield ingest`` prints (nothing when no NDVI source is configured)."""
        return [self.render()] if self.configured else []

    def event_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "acquisitions": self.acquisitions, "rows": self.rows}


def part_name(product: str, date: dt.date) -> str:
    """The file name (no suffix) of one acquisition in each plot bucket."""
    return f"{product}-{date:%Y%m%d}"


def shard_buckets(shard: int, shards: int) -> range:
    """The plot buckets of shard ``shard`` of ``shards`` (at most ``NDVI_PLOT_BUCKETS``): a
    contiguous range, disjoint from the other shards', all of them covering every bucket."""
    return range(
        -(-shard * NDVI_PLOT_BUCKETS // shards), -(-(shard + 1) * NDVI_PLOT_BUCKETS // shards)
    )


def read_plots(lake: Lake, buckets: Sequence[int] | None = None) -> Plots:
    """The plots NDVI is computed for: their polygons (``raw/plot_geometries.parquet``)
    where given, else their points (``raw/plots.parquet``, one per plot id); only those of
    ``buckets`` when given (geometries are built for those alone: a shard's memory follows
    its own plots). A polygon that is null or not valid WKB leaves its plot a point
    (logged)."""
    import pyarrow.compute as pc
    import shapely

    _require_plots(lake)
    table = lake.read_parquet(names.RAW_PLOTS, columns=["plot_id", "latitude", "longitude"])
    ids = table.column("plot_id").to_numpy(zero_copy_only=False)
    ids, first = np.unique(ids, return_index=True)
    if buckets is not None:
        keep = np.isin(ndvi_bucket(ids), list(buckets))
        ids, first = ids[keep], first[keep]
    geometry = np.empty(len(ids), dtype=object)
    if lake.exists(names.RAW_PLOT_GEOMETRIES):
        shapes = lake.read_parquet(names.RAW_PLOT_GEOMETRIES, columns=["plot_id", "geometry"])
        shapes = shapes.filter(pc.is_in(shapes.column("plot_id"), pa.array(ids)))
        shape_ids = shapes.column("plot_id").to_numpy(zero_copy_only=False)
        where = np.searchsorted(ids, shape_ids)
        wkb = shapes.column("geometry").to_numpy(zero_copy_only=False)
        geometry[where] = shapely.from_wkb(wkb, on_invalid="ignore")
        broken = int(np.count_nonzero(shapely.is_missing(geometry[where])))
        if broken:
            log.warning("ndvi: %d plot polygon(s) null or not WKB: taken as points", broken)
    points = shapely.is_missing(geometry)
    if points.any():
        longitude = table.column("longitude").to_numpy(zero_copy_only=False)[first[points]]
        latitude = table.column("latitude").to_numpy(zero_copy_only=False)[first[points]]
        geometry[points] = shapely.points(longitude, latitude)
    return Plots(ids, geometry)


def _require_plots(lake: Lake) -> None:
    if not lake.exists(names.RAW_PLOTS):
        raise MissingInputError(
            f"no plots in {lake.uri(names.RAW_PLOTS)}: ingest plots first "
            "(`nuru-yield ingest plots`), NDVI is computed for each plot"
        )


def plots_bbox(lake: Lake) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the plots' points, widened a little (a STAC search's
    box: read from the points alone, without building a polygon)."""
    _require_plots(lake)
    table = lake.read_parquet(names.RAW_PLOTS, columns=["latitude", "longitude"])
    lon = table.column("longitude").to_numpy(zero_copy_only=False)
    lat = table.column("latitude").to_numpy(zero_copy_only=False)
    if not len(lon):
        raise MissingInputError(f"no plots in {lake.uri(names.RAW_PLOTS)}")
    margin = _SEARCH_MARGIN_DEGREES
    return (
        float(np.nanmin(lon)) - margin,
        float(np.nanmin(lat)) - margin,
        float(np.nanmax(lon)) + margin,
        float(np.nanmax(lat)) + margin,
    )


def scene_from(ref: Mapping[str, str | None], settings: Settings | None = None) -> Scene:
    """The scene a :attr:`Scene.ref` names, rebuilt in this process."""
    from nuru_yield.sources import modis, sentinel2

    source = str(ref["source"])
    if ref.get("kind") == modis.KIND:
        return modis.composite_scene(source, ref.get("reliability"))
    if ref.get("kind") == sentinel2.KIND:
        return sentinel2.item_scene(sentinel2.read_item_file(source, settings), source)
    raise ValueError(f"unknown kind of scene {ref.get('kind')!r}")


def ledger(lake: Lake, product: str, date: dt.date) -> dict[str, dict[str, str | None]]:
    """The scenes (id → ref) an acquisition was last made from; {} when not ingested."""
    path = names.ndvi_ledger_path(product, date)
    return lake.read_json(path).get("scenes", {}) if lake.exists(path) else {}


def prepare_ndvi(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
    sources: Mapping[str, Sequence[str]] | None = None,
    stac: str | None = None,
    collection: str | None = None,
    days: int | None = None,
) -> NdviPlan:
    """Which acquisitions to compute (see the module docstring). ``sources``/``stac``: what
    ``nuru-yield ingest ndvi`` was given; neither: the configured sources."""
    from nuru_yield.sources.inputs import resolve, s3_raster_env

    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    given = sources is not None or stac is not None
    patterns = list((sources or {}).get(PRODUCT, [])) if given else _configured(settings)
    stac = stac if given else (settings.ndvi_stac_url or None)
    collection = collection or settings.ndvi_stac_collection
    lookback = settings.ndvi_stac_days if days is None else days
    found: list[Scene] = []
    bad: list[Quarantined] = []
    with s3_raster_env(settings):
        if patterns:
            from nuru_yield.sources import modis

            scenes, listed_bad = modis.composite_scenes(
                [source.uri for source in resolve(patterns, settings)]
            )
            found, bad = found + scenes, bad + listed_bad
        if stac:
            from nuru_yield.sources import sentinel2

            window = (run_date - dt.timedelta(days=lookback), run_date)
            scenes, listed_bad = sentinel2.stac_scenes(
                stac, collection, plots_bbox(lake), days=window, settings=settings
            )
            found, bad = found + scenes, bad + listed_bad
        later = [scene for scene in found if scene.date > run_date]
        found = [scene for scene in found if scene.date <= run_date]
        work, skipped, stale = _work(lake, found, settings)
        work, checked_bad = _checked(work)
    total = len(found) + len(bad) + len(stale)  # checked_bad are among found
    bad += stale + checked_bad
    configured = bool(patterns or stac)
    count = max(1, min(shards or settings.ingest_shards, NDVI_PLOT_BUCKETS)) if work else 1
    plan = NdviPlan(
        run_id=NdviPlan.new_run_id(run_date), run_date=run_date, shards=count,
        scenes=total, skipped=skipped, later=len(later),
        acquisitions=len(work), quarantined=len(bad), configured=configured,
    )  # fmt: skip
    clear_parts(lake, plan)
    if configured:
        _check_bad_share(lake, bad, total, settings.validation_max_bad_share)
    acquisitions = [
        {"product": product, "date": date.isoformat(), "scenes": {s.scene_id: s.ref for s in group}}
        for (product, date), group in sorted(work.items())
    ]
    quarantined = [{"scene_id": q.scene_id, "source": q.source, "reason": q.reason} for q in bad]
    write_report(lake, plan, None, {
        "acquisitions": acquisitions, "quarantined": quarantined, "dag_run_id": dag_run_id,
    })  # fmt: skip
    log.info(
        "ingest ndvi: %d scene(s) found, %d already ingested, %d after %s, %d quarantined; "
        "%d acquisition(s) to compute in %d shard(s)",
        plan.scenes, skipped, len(later), run_date, len(bad), len(work), plan.shards,
    )  # fmt: skip
    return plan


def _configured(settings: Settings) -> list[str]:
    return [settings.ndvi_source] if settings.ndvi_source else []


def _work(
    lake: Lake, found: Sequence[Scene], settings: Settings
) -> tuple[dict[tuple[str, dt.date], list[Scene]], int, list[Quarantined]]:
    """The acquisitions to compute, with every scene each is made of (the recorded ones
    too); how many scenes were already ingested; recorded scenes that can no longer be
    read."""
    groups: dict[tuple[str, dt.date], list[Scene]] = defaultdict(list)
    for scene in found:
        groups[(scene.product, scene.date)].append(scene)
    work: dict[tuple[str, dt.date], list[Scene]] = {}
    skipped = 0
    stale: list[Quarantined] = []
    for (product, date), group in sorted(groups.items()):
        recorded = ledger(lake, product, date)
        ids = {scene.scene_id for scene in group}
        if recorded and ids <= set(recorded):
            skipped += len(group)
            continue
        scenes = {scene.scene_id: scene for scene in group}
        for scene_id, ref in sorted(recorded.items()):
            if scene_id in scenes:
                continue
            try:
                scenes[scene_id] = scene_from(ref, settings)
            except (BadScene, ValueError) as error:
                stale.append(Quarantined(scene_id, str(ref.get("source")), str(error)))
        work[(product, date)] = [scenes[key] for key in sorted(scenes)]
    return work, skipped, stale


def _checked(
    work: dict[tuple[str, dt.date], list[Scene]],
) -> tuple[dict[tuple[str, dt.date], list[Scene]], list[Quarantined]]:
    """Each scene checked whole: the good ones per acquisition (an acquisition left with
    none is dropped), the bad ones with their reason."""
    kept: dict[tuple[str, dt.date], list[Scene]] = {}
    bad: list[Quarantined] = []
    for key, scenes in work.items():
        good = []
        for scene in scenes:
            try:
                if scene.check is not None:
                    scene.check()
            except BadScene as error:
                bad.append(Quarantined(scene.scene_id, scene.source, str(error)))
                continue
            good.append(scene)
        if good:
            kept[key] = good
    return kept, bad


def ingest_ndvi_shard(
    plan: NdviPlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> NdviShardResult:
    """Every acquisition's rows for the plots of one shard's buckets, staged (see the
    module docstring)."""
    from nuru_yield.sources.inputs import s3_raster_env

    plan.checked(shard)
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    buckets = list(shard_buckets(shard, plan.shards))
    acquisitions = lake.read_json(plan.report(None))["acquisitions"]
    rows = 0
    if acquisitions:
        plots = read_plots(lake, buckets)
        with s3_raster_env(settings):
            for acquisition in acquisitions:
                rows += _stage(lake, plan, shard, buckets, plots, acquisition, settings)
    write_report(lake, plan, shard, {"buckets": buckets, "rows": rows})
    log.info("ingest ndvi shard %d/%d: buckets %s, %d plot rows", shard, plan.shards,
             f"{buckets[0]}-{buckets[-1]}", rows)  # fmt: skip
    return NdviShardResult(shard, buckets, rows)


def _stage(
    lake: Lake, plan: NdviPlan, shard: int, buckets: list[int], plots: Plots,
    acquisition: dict[str, Any], settings: Settings,
) -> int:  # fmt: skip
    """One acquisition's rows of the shard's plots, one staged part per bucket."""
    product, date = acquisition["product"], dt.date.fromisoformat(acquisition["date"])
    try:
        scenes = [scene_from(ref, settings) for ref in acquisition["scenes"].values()]
    except BadScene as error:
        raise DataValidationError(f"ndvi {product} {date}: {error}") from None
    table, used, bad = acquisition_rows(scenes, plots)
    if bad:
        first = bad[0]
        raise DataValidationError(
            f"ndvi {product} {date}: {first.source}: {first.reason} (it passed the prepare "
            "step's check: the file changed or a read failed; rerun the shard)"
        )
    sources = {scene.scene_id: scene.source for scene in scenes if scene.scene_id in used}
    manifest = json.dumps({"scenes": dict(sorted(sources.items()))}, sort_keys=True)
    schema = stamped(NDVI_SCHEMA.with_metadata({MANIFEST_KEY: manifest}), plan)
    bucket_of = ndvi_bucket(table.column("plot_id"))
    for bucket in buckets:
        part = table.filter(pa.array(bucket_of == bucket))
        lake.write_parquet(plan.part(shard, _bucket_part(product, date, bucket)), part.cast(schema))
    return table.num_rows


def _bucket_part(product: str, date: dt.date, bucket: int) -> str:
    return f"{part_name(product, date)}-b{bucket:03d}"


def publish_ndvi(
    plan: NdviPlan,
    results: Sequence[NdviShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> NdviResult:
    """Every staged part into its bucket, each acquisition's ledger, the quarantine (see the
    module docstring)."""
    lake = lake or Lake.from_settings(settings)
    prepared, *reports = read_reports(lake, plan, prepare=True)
    for acquisition in prepared["acquisitions"]:
        product, date = acquisition["product"], dt.date.fromisoformat(acquisition["date"])
        for shard in range(plan.shards):
            for bucket in shard_buckets(shard, plan.shards):
                place(
                    lake, plan, shard, _bucket_part(product, date, bucket),
                    names.ndvi_bucket_path(date.year, bucket, part_name(product, date)),
                )  # fmt: skip
        lake.write_json(
            names.ndvi_ledger_path(product, date),
            {"run_id": plan.run_id, "scenes": acquisition["scenes"]},
        )
    if plan.configured:
        quarantined = [Quarantined(**entry) for entry in prepared["quarantined"]]
        lake.write_parquet(names.rejected_raw_path(PRODUCT), _rejected(quarantined))
    clear_parts(lake, plan)
    rows = sum(report["rows"] for report in reports)
    result = NdviResult(
        plan.run_id, plan.run_date, scenes=plan.scenes, skipped=plan.skipped, later=plan.later,
        acquisitions=plan.acquisitions, rows=rows, quarantined=plan.quarantined,
        configured=plan.configured,
    )  # fmt: skip
    log.info("ingest %s", result.render())
    return result


def _rejected(quarantined: Sequence[Quarantined]) -> pa.Table:
    """The quarantined scenes in the ingest's quarantine schema (the file, no plot, the
    reason, the scene id)."""
    return pa.table(
        {
            SOURCE: [q.source for q in quarantined],
            "plot_id": pa.nulls(len(quarantined), pa.string()),
            REASON: [q.reason for q in quarantined],
            "row": [json.dumps({"scene_id": q.scene_id}) for q in quarantined],
        },
        schema=REJECTED,
    )


def _check_bad_share(
    lake: Lake, quarantined: list[Quarantined], found: int, threshold: float
) -> None:
    """Fail (writing the quarantine and nothing else) when the share of bad scenes among
    those found passes ``threshold``; log each bad scene."""
    for q in quarantined:
        log.warning("ndvi: %s quarantined: %s", q.source, q.reason)
    share = len(quarantined) / found if found else 0.0
    if share > threshold:
        where = lake.write_parquet(names.rejected_raw_path(PRODUCT), _rejected(quarantined))
        first = quarantined[0]
        raise DataValidationError(
            f"{len(quarantined)} of {found} NDVI scene(s) bad ({share:.1%} > "
            f"VALIDATION_MAX_BAD_SHARE {threshold:.1%}), e.g. {first.source}: {first.reason}; "
            f"nothing ingested, see {where}"
        )


NDVI = Night(NdviPlan, NdviShardResult, prepare_ndvi, ingest_ndvi_shard, publish_ndvi)


def ingest_ndvi(
    paths: Sequence[str] | None = None,
    *,
    stac: str | None = None,
    collection: str | None = None,
    days: int | None = None,
    run_date: dt.date | None = None,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
) -> NdviResult:
    """``nuru-yield ingest ndvi PATH…`` (composites) or ``--stac URL --collection C``
    (Sentinel-2 L2A scenes of a STAC API or static catalog over the plots), or with neither
    the configured sources: the night ``run_date`` (default today, UTC) in one process."""
    settings = settings or get_settings()
    if stac is None and not paths and not (settings.ndvi_source or settings.ndvi_stac_url):
        raise MissingInputError(
            "no NDVI files given (nuru-yield ingest ndvi PATH…, or --stac) and neither "
            "NDVI_SOURCE nor NDVI_STAC_URL is set"
        )
    given = {"sources": {PRODUCT: list(paths or [])}, "stac": stac} if paths or stac else {}
    return run_night(
        NDVI, run_date or dt.datetime.now(dt.UTC).date(), lake=lake, settings=settings,
        shards=shards, collection=collection, days=days, **given,
    )  # fmt: skip
