"""Realistic synthetic raw inputs (docs/DESIGN.md, "Raw input contract"): plots, weather, NDVI and harvest labels for
Kenyan maize counties, with yields from an AquaCrop response table (see ``crop``)."""

from nuru_yield.sample_data.generator import SampleDataSummary, generate_to_lake

__all__ = ["SampleDataSummary", "generate_to_lake"]
