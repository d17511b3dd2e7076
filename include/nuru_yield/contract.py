"""The raw input contract (docs/DESIGN.md, "Raw input contract") as Arrow schemas: one
definition for the sample-data writer and the feature reader
(``nuru_yield.features.columns``)."""

from __future__ import annotations

import pyarrow as pa

PLOTS_SCHEMA = pa.schema(
    [
        ("plot_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("altitude", pa.float64()),
        ("county", pa.string()),
        ("season", pa.string()),
        ("season_year", pa.int64()),
        ("planting_date", pa.date32()),
    ]
)
# Each plot's boundary as its file gave it (a point for a file of points or coordinates), in
# WGS 84, one row per plot: GeoParquet 1.0 (WKB, no "crs" key = OGC:CRS84, longitude first),
# so geopandas.read_parquet reads it as it is. Written by `nuru-yield ingest plots`.
PLOT_GEOMETRIES_SCHEMA = pa.schema(
    [("plot_id", pa.int64()), ("geometry", pa.binary())],
    metadata={
        "geo": '{"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": '
        '{"encoding": "WKB", "geometry_types": []}}}'
    },
)
# An optional column of ``raw/plots.parquet`` (readers of the contract ignore it): the plot's
# area in hectares, null where unknown (a plot given as a point). It weights a plot in its
# county's figures and makes production (tonnes) countable (``nuru_yield.counties``).
# `nuru-yield ingest plots` writes it from an area column, else the polygon's area.
PLOT_AREA = "area_ha"
PLOTS_WITH_AREA_SCHEMA = PLOTS_SCHEMA.append(pa.field(PLOT_AREA, pa.float64()))
CELLS_SCHEMA = pa.schema(
    [("cell_id", pa.int64()), ("latitude", pa.float64()), ("longitude", pa.float64())]
)
WEATHER_SCHEMA = pa.schema(
    [
        ("cell_id", pa.int64()),
        ("date", pa.date32()),
        ("precip_mm", pa.float64()),
        ("tmin_c", pa.float64()),
        ("tmax_c", pa.float64()),
        ("srad_mj_m2", pa.float64()),
    ]
)
# Each year's NDVI is split into this many plot buckets (hash of plot_id, see
# nuru_yield.raw_layout), so that a feature shard reads only its plots' scenes.
NDVI_PLOT_BUCKETS = 32
# A plot whose share without a clear pixel (cloud, shadow, snow, no data) is above this is
# "cloudy": its NDVI is null in the raster ingestion's rows (docs/DESIGN.md, "NDVI from
# rasters") and such an observation never enters the features.
CLEAR_MAX_CLOUD = 0.5
NDVI_SCHEMA = pa.schema(
    [
        ("plot_id", pa.int64()),
        ("date", pa.date32()),
        ("ndvi", pa.float64()),
        ("cloud_fraction", pa.float64()),
    ]
)
# The harvest label: what every model learns and is judged against.
YIELD_LABEL = "yield_kg_per_ha"
YIELDS_SCHEMA = pa.schema(
    [
        ("plot_id", pa.int64()),
        ("season", pa.string()),
        ("season_year", pa.int64()),
        (YIELD_LABEL, pa.float64()),
    ]
)
