#!/usr/bin/env python
"""The seed's promotion script, kept working (see docs/DESIGN.md, "Layout"):

    python scripts/promote_model_to_production.py --run-id ID \\
        --model-name Ensemble_VotingRegressor [--stage Production]

It registers the run's model under the name and moves the registry alias the stage maps to
(``Production`` → ``@champion``, the old champion keeping ``@previous``; ``Staging`` →
``@challenger``), sets the stage too, and records it in ``model_promotions`` like any
promotion. It is exactly ``nuru-yield promote`` with the same options, so it shares its
checks and one-line errors. Run by a Python without the project installed (a fresh shell),
it hands over to the project's ``.venv`` (``make setup``), or says how to run it.
"""

import os
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".venv"

try:
    from nuru_yield.cli import main
except ModuleNotFoundError as error:
    if error.name != "nuru_yield":
        raise
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), *sys.argv])
    sys.exit(
        "error: the nuru_yield package is not installed for this Python: run `make setup`, "
        f"then `.venv/bin/python {' '.join(sys.argv)}` (or `source .venv/bin/activate` first)"
    )

if __name__ == "__main__":
    main(sys.argv[1:], command="promote")
