"""``nuru-yield ingest ndvi``: NDVI rasters into the raw contract's plot-bucketed NDVI
(docs/DESIGN.md, "Raw input contract" and "NDVI from rasters").

Scenes come from GeoTIFF/COG composites (:mod:`nuru_yield.sources.modis`) or a STAC catalog
(:mod:`nuru_yield.sources.sentinel2`). They are grouped into acquisitions (a product and a
date); each acquisition becomes one file per plot bucket,
``raw/ndvi/year=YYYY/plot_bucket=BBB/{product}-{YYYYMMDD}.parquet``, whose parquet metadata
is its manifest (``nuru_yield.sources``, as for the stored weather months of
:mod:`nuru_yield.sources.weather`): the scenes it was made from. So:

- a scene already ingested is skipped by its id: an acquisition whose manifest holds every
  scene found is not read again; a new scene of an ingested date (a tile that came late)
  makes the whole acquisition be recomputed from all its scenes, the recorded ones too;
- the same scenes give the same rows (sorted, no time stamps): a re-ingest rewrites
  identical files;
- every file is written atomically and nothing is written until every acquisition of the
  run is computed: a run that is killed or fails leaves the previous rows.

Bad scenes are quarantined (``raw/rejected/ndvi.parquet``: scene, source, reason); the run
fails, writing nothing, when their share passes ``VALIDATION_MAX_BAD_SHARE``.
``buckets`` restricts a run to some plot buckets (the plots of a mapped task).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import NDVI_PLOT_BUCKETS, NDVI_SCHEMA
from nuru_yield.errors import DataValidationError, MissingInputError
from nuru_yield.lake import Lake
from nuru_yield.raw_layout import ndvi_bucket, write_ndvi_year
from nuru_yield.sources.ndvi_rasters import Plots, Quarantined, Scene, acquisition_rows
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

PRODUCT = "ndvi"
# The manifest key of a stored part (shared with nuru_yield.sources.weather's months).
MANIFEST_KEY = "nuru_yield.sources"
# Scenes (and files left out) of sources an acquisition's manifest names.
Reread = Callable[[list[str]], tuple[list[Scene], list[Quarantined]]]
REJECTED_SCHEMA = pa.schema(
    [("scene_id", pa.string()), ("source", pa.string()), ("reason", pa.string())]
)


@dataclass(frozen=True)
class NdviResult(StepResult):
    """What one NDVI ingest did (small, for XCom and the CLI)."""

    scenes: int
    skipped: int
    acquisitions: int
    rows: int
    quarantined: int
    buckets: list[int] = field(default_factory=list)

    def render(self) -> str:
        return (
            f"ndvi: {self.scenes} scene(s) found, {self.skipped} already ingested; "
            f"{self.acquisitions} acquisition(s) written, {self.rows:,} plot rows; "
            f"{self.quarantined} scene(s) quarantined"
        )


def part_name(product: str, date: dt.date) -> str:
    """The file name (no suffix) of one acquisition in each plot bucket."""
    return f"{product}-{date:%Y%m%d}"


def read_plots(lake: Lake, buckets: Sequence[int] | None = None) -> Plots:
    """The plots NDVI is computed for: their polygons (``raw/plot_geometries.parquet``)
    where given, else their points (``raw/plots.parquet``, one per plot id); only those of
    ``buckets`` when given (geometries are built for those alone: a shard's memory follows
    its own plots). A polygon that is null or not valid WKB leaves its plot a point
    (logged)."""
    import pyarrow.compute as pc
    import shapely

    if not lake.exists(names.RAW_PLOTS):
        raise MissingInputError(
            f"no plots in {lake.uri(names.RAW_PLOTS)}: ingest plots first "
            "(`nuru-yield ingest plots`), NDVI is computed for each plot"
        )
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


def stored_scenes(lake: Lake, product: str, date: dt.date, buckets: Sequence[int]) -> dict:
    """The manifest of an acquisition in ``buckets``: {scene id: source} when every bucket
    file is there and they agree, else {} (not, or not completely, ingested)."""
    manifests = []
    for bucket in buckets:
        path = names.ndvi_bucket_path(date.year, bucket, part_name(product, date))
        if not lake.exists(path):
            return {}
        metadata = lake.open_parquet(path).schema_arrow.metadata or {}
        manifests.append(metadata.get(MANIFEST_KEY.encode(), b"{}"))
    if len(set(manifests)) != 1:
        return {}
    return json.loads(manifests[0]).get("scenes", {})


def ingest_scenes(
    scenes: Sequence[Scene],
    bad: Sequence[Quarantined],
    *,
    lake: Lake,
    settings: Settings | None = None,
    buckets: Sequence[int] | None = None,
    reread: Reread | None = None,
) -> NdviResult:
    """Ingest ``scenes`` (and record the files already found bad, ``bad``).

    ``reread(sources)`` gives the scenes of sources recorded in an acquisition's manifest
    that were not found this time (a late tile recomputes its whole date)."""
    settings = settings or get_settings()
    wanted = list(range(NDVI_PLOT_BUCKETS) if buckets is None else buckets)
    plots = read_plots(lake, None if buckets is None else wanted)
    groups: dict[tuple[str, dt.date], list[Scene]] = defaultdict(list)
    for scene in scenes:
        groups[(scene.product, scene.date)].append(scene)
    quarantined = list(bad)
    skipped = 0
    pending: list[tuple[str, dt.date, pa.Table, dict[str, str]]] = []
    for (product, date), group in sorted(groups.items()):
        stored = stored_scenes(lake, product, date, wanted)
        if stored and {scene.scene_id for scene in group} <= set(stored):
            skipped += len(group)
            continue
        missing = sorted(set(stored.values()) - {scene.source for scene in group})
        if missing and reread is not None:
            found, lost = reread(missing)
            group = [*group, *(s for s in found if (s.product, s.date) == (product, date))]
            quarantined.extend(lost)
        rows, used, left_out = acquisition_rows(group, plots)
        quarantined.extend(left_out)
        sources = {scene.scene_id: scene.source for scene in group if scene.scene_id in used}
        if used:
            pending.append((product, date, rows, sources))
        log.info(
            "ndvi %s %s: %d scene(s), %d plot rows, %d quarantined",
            product, date, len(used), rows.num_rows, len(left_out),
        )  # fmt: skip
    found = len(scenes) + len(bad)
    _check_bad_share(lake, quarantined, found, settings.validation_max_bad_share)
    rows = 0
    for product, date, table, sources in pending:
        manifest = json.dumps({"scenes": dict(sorted(sources.items()))}, sort_keys=True)
        schema = NDVI_SCHEMA.with_metadata({MANIFEST_KEY: manifest})
        write_ndvi_year(
            lake, date.year, schema, [table.cast(schema)], part_name(product, date), wanted
        )
        rows += table.num_rows
    return NdviResult(found, skipped, len(pending), rows, len(quarantined), wanted)


def ingest_ndvi(
    paths: Sequence[str] | None = None,
    *,
    stac: str | None = None,
    collection: str | None = None,
    lake: Lake | None = None,
    settings: Settings | None = None,
    buckets: Sequence[int] | None = None,
) -> NdviResult:
    """``nuru-yield ingest ndvi PATH…`` (composites) or ``--stac URL --collection C``
    (Sentinel-2 L2A scenes of a STAC API or static catalog over the plots)."""
    from nuru_yield.sources import modis
    from nuru_yield.sources.inputs import resolve, s3_raster_env

    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    if stac and not collection:
        raise MissingInputError("--stac needs --collection (e.g. sentinel-2-l2a)")
    if not stac and not paths:
        raise MissingInputError("no NDVI files given (nuru-yield ingest ndvi PATH…, or --stac)")
    with s3_raster_env(settings):  # s3:// rasters are read in place
        if stac:
            from nuru_yield.sources import sentinel2

            plots = read_plots(lake, buckets)
            scenes, bad = sentinel2.stac_scenes(
                stac, str(collection), plots.bounds(), settings=settings
            )
            return ingest_scenes(scenes, bad, lake=lake, settings=settings, buckets=buckets)
        files = [source.uri for source in resolve(list(paths or []), settings)]
        scenes, bad = modis.composite_scenes(files)
        return ingest_scenes(
            scenes, bad, lake=lake, settings=settings, buckets=buckets,
            reread=modis.composite_scenes,
        )  # fmt: skip


def _check_bad_share(
    lake: Lake, quarantined: list[Quarantined], found: int, threshold: float
) -> None:
    """Record the quarantined scenes; fail (before anything is written) when their share
    of the scenes found passes ``threshold``."""
    table = pa.table(
        {
            "scene_id": [q.scene_id for q in quarantined],
            "source": [q.source for q in quarantined],
            "reason": [q.reason for q in quarantined],
        },
        schema=REJECTED_SCHEMA,
    )
    where = lake.write_parquet(names.rejected_raw_path(PRODUCT), table)
    for q in quarantined:
        log.warning("ndvi: %s quarantined: %s", q.source, q.reason)
    share = len(quarantined) / found if found else 0.0
    if share > threshold:
        first = quarantined[0]
        raise DataValidationError(
            f"{len(quarantined)} of {found} NDVI scene(s) bad ({share:.1%} > "
            f"VALIDATION_MAX_BAD_SHARE {threshold:.1%}), e.g. {first.source}: {first.reason}; "
            f"nothing ingested, see {where}"
        )
