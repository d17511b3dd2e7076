"""Real data in: each product a team downloads, as downloaded, into the raw contract
(docs/DESIGN.md, "Real sources" and "Raw input contract").

One module per product, each a pure reader (a local file in, contract rows or values at
the weather cells out, or one :class:`~nuru_yield.errors.DataValidationError` line naming
the file): :mod:`.chirps` (rain), :mod:`.agera5` (temperature, radiation), :mod:`.plots`
(plots and plot-seasons), :mod:`.yields` (harvest labels), :mod:`.modis` (MOD13Q1-style
NDVI composites) and :mod:`.sentinel2` (Sentinel-2 L2A scenes through STAC). What they
share: :mod:`.inputs` (a file, folder, glob or ``s3://`` prefix → files with fingerprints),
:mod:`.rasters` (grid checks and point sampling), :mod:`.tables` (column spellings,
quarantine and the raw-contract writer under the bad-share rule), :mod:`.weather` (gridded
products month by month into ``raw/weather``), :mod:`.ndvi_rasters` (per-plot NDVI and
cloud fraction from any NDVI raster: docs/DESIGN.md, "NDVI from rasters"), :mod:`.ndvi`
(NDVI scenes into the plot-bucketed ``raw/ndvi``), :mod:`.ingest` (the steps the CLI and
the DAG call).

Adding a product: a module ``sources/<product>.py`` with its ``PRODUCT`` name, file naming
and a pure reader checked against the product's published conventions (written down in
docs/DESIGN.md with their source); its rows go through :func:`.tables.write_raw` (or a
month-by-month store like :mod:`.weather`); then add it to :data:`.ingest.PRODUCTS` (the
order a night ingests in), a ``<PRODUCT>_SOURCE`` setting, a ``nuru-yield ingest
<product>`` command and a task of the ``raw_ingestion`` DAG.
"""
