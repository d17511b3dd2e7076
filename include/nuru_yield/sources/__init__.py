"""Real data in: each product a team downloads, as downloaded, into the raw contract
(docs/DESIGN.md, "Real sources", "NDVI from rasters" and "Raw input contract").

One module per product, each a pure reader (a local file in, contract rows or values at
the weather cells out, or one :class:`~nuru_yield.errors.DataValidationError` line naming
the file): :mod:`.chirps` (rain), :mod:`.agera5` (temperature, radiation), :mod:`.plots`
(plots, plot-seasons and their boundaries), :mod:`.yields` (harvest labels), :mod:`.modis`
(MOD13Q1-style NDVI composites) and :mod:`.sentinel2` (Sentinel-2 L2A scenes through STAC).
What they share: :mod:`.inputs` (a file, folder, glob or ``s3://`` prefix → files with
fingerprints; GDAL's S3 settings), :mod:`.rasters` (grid checks and point sampling),
:mod:`.tables` (column spellings, the quarantine and its table, the bad-share rule),
:mod:`.ndvi_rasters` (per-plot NDVI and cloud fraction from any NDVI raster).

Raw ingestion is three sharded nights (:mod:`nuru_yield.nightly`), the plots first because
NDVI is computed for each plot and weather sampled where the plots are: :mod:`.plot_tables`
(``PLOT_TABLES``: plots and labels by plot bucket, each file read once by ``prepare`` and
split by the shard hash of its plot ids), :mod:`.ndvi` (``NDVI``: each acquisition's rows
by ranges of plot buckets, scenes checked once by ``prepare``) and :mod:`.weather`
(``WEATHER``: CHIRPS and AgERA5 by month, each month staged by a shard and placed by
``publish``). :mod:`.ingest` runs them in one process (``nuru-yield ingest``); the
``raw_ingestion`` DAG wires each through ``nuru_yield.orchestration.sharded_night`` in a
task group.

Adding a product: a module ``sources/<product>.py`` with its ``PRODUCT`` name, file naming
and a pure reader checked against the product's published conventions (written down in
docs/DESIGN.md with their source); a night of its own (a plan deriving from ``NightPlan``,
``prepare → shard → publish`` staging through :mod:`nuru_yield.nightly`, as :mod:`.ndvi`)
or a place in one of the three above; its ``<PRODUCT>_SOURCE`` setting, a ``nuru-yield
ingest <product>`` command and a ``TaskGroup`` of the ``raw_ingestion`` DAG after the plots.
"""
