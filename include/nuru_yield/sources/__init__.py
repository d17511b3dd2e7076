"""Real data in: readers that turn what crop teams receive into the raw input contract
(docs/DESIGN.md, "Raw input contract"). NDVI from rasters: ``ndvi_rasters`` (the zonal
statistics every product shares), ``modis`` (MOD13Q1-style composites), ``sentinel2``
(Sentinel-2 L2A through STAC)."""
