"""The Forecasts view inside Airflow's UI (docs/DESIGN.md, "The Forecasts view"): the county
bulletins of a night, a map of the plots by % of normal, each county's season trajectory,
skill by lead time and the night's runs.

An Airflow plugin (``nuru_yield.ui.plugin.ForecastsPlugin``, registered by
``plugins/nuru_forecasts.py``) mounts the app of ``nuru_yield.ui.app`` in Airflow's API server
behind Airflow's own login; ``nuru_yield.ui.data`` reads the database and the lake,
``nuru_yield.ui.charts`` draws the SVG charts and ``nuru_yield.ui.page`` the page. Only
``app`` and ``plugin`` import Airflow; nothing here writes.
"""
