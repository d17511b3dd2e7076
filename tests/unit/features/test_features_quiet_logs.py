"""The feature run's log is its own: great-expectations, imported in a background thread
as the features step does, then given a context, adds nothing below WARNING (at INFO it
logged some 200 lines before the run's first one, in the CLI and the Airflow task log)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_great_expectations_logs_nothing_below_warning_during_a_feature_run() -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from nuru_yield.features.materialize import _import_in_background
        from nuru_yield.features.validation import _context
        _import_in_background("great_expectations").join()
        _context()
        logging.getLogger("nuru_yield.features").info("the run's own line")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert "the run's own line" in result.stderr
    great_expectations_lines = [
        line for line in result.stderr.splitlines() if ":great_expectations" in line
    ]
    assert great_expectations_lines == []
