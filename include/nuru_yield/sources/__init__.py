"""Real data in: each product a team downloads, as downloaded, into the raw contract
(docs/DESIGN.md, "Real sources" and "Raw input contract").

One module per product, each a pure reader (a local file in, contract rows or values at
the weather cells out, or one :class:`~nuru_yield.errors.DataValidationError` line naming
the file): :mod:`.chirps` (rain), :mod:`.agera5` (temperature, radiation), :mod:`.plots`
(plots, plot-seasons and their boundaries), :mod:`.yields` (harvest labels). What they
share: :mod:`.inputs` (a file, folder, glob or ``s3://`` prefix → files with
fingerprints), :mod:`.rasters` (grid checks and point sampling), :mod:`.tables` (column
spellings, the quarantine and its table, the bad-share rule).

Raw ingestion is two sharded nights (:mod:`nuru_yield.nightly`), the plots first because
weather is sampled where the plots are: :mod:`.plot_tables` (``PLOT_TABLES``: plots and
labels by plot bucket, each file read once by ``prepare`` and split by the shard hash of
its plot ids) and :mod:`.weather` (``WEATHER``: CHIRPS and AgERA5 by month, each month
staged by a shard and placed by ``publish``). :mod:`.ingest` runs them in one process
(``nuru-yield ingest``); the ``raw_ingestion`` DAG wires each through
``nuru_yield.orchestration.sharded_night`` in a task group.

Adding a product (NDVI from MODIS or Sentinel-2, say): a module ``sources/<product>.py``
with its ``PRODUCT`` name, file naming and a pure reader checked against the product's
published conventions (written down in docs/DESIGN.md with their source); a night of its
own (a plan deriving from ``NightPlan``, ``prepare → shard → publish`` staging through
:mod:`nuru_yield.nightly`, sharded by plot bucket or by scene date; ``raw/plot_geometries.parquet``
gives each plot's boundary for zonal statistics) or a place in one of the two above; its
``<PRODUCT>_SOURCE`` setting, a ``nuru-yield ingest <product>`` command (a product of
:data:`.ingest.NIGHTS`) and a ``TaskGroup`` of the ``raw_ingestion`` DAG after the plots.
"""
