"""Realistic synthetic raw inputs (docs/DESIGN.md, "Raw input contract"): plots, weather, NDVI and harvest labels for
Kenyan maize counties, with yields from an AquaCrop response table (see ``crop``).
``generator.generate_to_lake`` writes them; this file imports nothing."""
