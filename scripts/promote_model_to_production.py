#!/usr/bin/env python
"""The seed's promotion script, kept working (DESIGN §2):

    python scripts/promote_model_to_production.py --run-id ID \\
        --model-name Ensemble_VotingRegressor [--stage Production]

It registers the run's model under the name and moves the registry alias the stage maps to
(``Production`` → ``@champion``, the old champion keeping ``@previous``; ``Staging`` →
``@challenger``), recorded in ``model_promotions`` like any promotion. It is exactly
``nuru-yield promote`` with the same options, so it shares its checks and one-line errors.
"""

import sys

from nuru_yield.cli import main

if __name__ == "__main__":
    main(["promote", *sys.argv[1:]])
