"""The predictions database (docs/DESIGN.md, "Database"): engines, migrations and bulk loaders.

Import from the defining module (this file imports nothing, so that importing
``nuru_yield.db.schema`` — the API does — or running ``db upgrade`` does not load the bulk
loader's pyarrow and numpy): :mod:`.schema` (table definitions), :mod:`.engine`
(``get_engine``, ``check_connection``, ``dispose_engines``), :mod:`.migrations`
(``upgrade``), :mod:`.loader` (``stage``, ``publish``, ``replace_partition``,
``replace_rows``, …).
"""
