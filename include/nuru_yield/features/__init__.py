"""Season-to-date plot features: raw contract → ``features/{D}/…`` partition.

Import from the defining module (this file imports nothing, so that importing one module
does not load the package). Public interface, relied on by training and scoring:

* :mod:`.columns` — ``KEY_COLUMNS``, ``FEATURE_COLUMNS`` (float64 model inputs, fixed
  order), ``OUTPUT_SCHEMA``;
* :mod:`.raw` — ``load_raw`` → ``RawInputs``;
* :mod:`.compute` — ``season_to_date`` (serving) and ``training_rows`` (training), both
  built on ``compute_features``;
* :mod:`.materialize` — ``FEATURES``, the sharded night (``nuru_yield.nightly``):
  ``prepare_features`` → ``materialize_shard`` × K → ``publish_features``, and
  ``materialize``, the three in one process: load, compute, validate and write one date's
  partition.
"""
