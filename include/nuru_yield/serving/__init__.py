"""The read-only prediction API (docs/DESIGN.md, "What the system does" and "Database"):
lookups of what batch scoring stored.

``nuru_yield.serving.app.create_app`` builds the FastAPI app; ``nuru-yield serve`` runs it.
Nothing here imports Airflow or training code, and nothing writes to the database.
"""
