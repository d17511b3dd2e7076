"""The development wing: what a developer's machine and the tests use, never the pipeline or
the API at run time — the demo, a local Airflow standalone, throwaway local services and the
benchmarks (``nuru-yield bench …``). The CLI imports it inside the commands that need it,
import-linter forbids every runtime package to import it, and the API image does not ship
it."""
