"""The Forecasts view in Airflow's UI (docs/DESIGN.md, "The Forecasts view"): Airflow loads
the plugins of this folder; the plugin lives in the package (``nuru_yield.ui.plugin``)."""

from nuru_yield.ui.plugin import ForecastsPlugin

__all__ = ["ForecastsPlugin"]
