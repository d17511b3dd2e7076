"""Season-to-date plot features: raw contract → ``features/{D}/…`` partition.

Public interface, relied on by training and scoring:

* :data:`KEY_COLUMNS`, :data:`FEATURE_COLUMNS` (float64 model inputs, fixed order)
* :func:`load_raw` → :class:`RawInputs`
* :func:`season_to_date` (serving) and :func:`training_rows` (training), both built on
  :func:`compute_features`
* :func:`materialize`: load, compute, validate and write one date's partition, in shards
  (:func:`prepare_features` → :func:`materialize_shard` × K → :func:`publish_features`).
"""

from nuru_yield.features.columns import (
    CONTEXT_COLUMNS,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    OUTPUT_COLUMNS,
    OUTPUT_SCHEMA,
)
from nuru_yield.features.compute import (
    SeasonToDate,
    compute_features,
    season_to_date,
    training_rows,
)
from nuru_yield.features.materialize import (
    FeaturePlan,
    FeatureShardResult,
    MaterializeResult,
    materialize,
    materialize_shard,
    prepare_features,
    publish_features,
    published_partition,
)
from nuru_yield.features.raw import RawInputs, load_raw

__all__ = [
    "CONTEXT_COLUMNS",
    "FEATURE_COLUMNS",
    "KEY_COLUMNS",
    "OUTPUT_COLUMNS",
    "OUTPUT_SCHEMA",
    "FeaturePlan",
    "FeatureShardResult",
    "MaterializeResult",
    "RawInputs",
    "SeasonToDate",
    "compute_features",
    "load_raw",
    "materialize",
    "materialize_shard",
    "prepare_features",
    "publish_features",
    "published_partition",
    "season_to_date",
    "training_rows",
]
