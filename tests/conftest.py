"""Shared fixtures: isolated settings, a throwaway PostgreSQL 15 and a moto S3 server."""

pytest_plugins = [
    "tests.fixtures.settings",
    "tests.fixtures.services",
    "tests.fixtures.training",
    "tests.fixtures.airflow",
    "tests.fixtures.scoring",
]
