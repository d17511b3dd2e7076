"""Exact TreeSHAP for pairwise-constrained tree ensembles, at table-lookup speed.

Native TreeSHAP (``pred_contribs`` / ``pred_contrib``) costs O(leaves × depth²) per tree
and row — hundreds of times a prediction — so explaining a million plots a night with it
takes hours on two cores. Training constrains every tree path to at most two distinct
features (xgboost/lightgbm ``interaction_constraints`` over feature pairs: a pairwise
additive model on the margin scale, 1–2.3% less accurate than the unconstrained models on
the sample data: ``docs/DESIGN.md``, "Measurements"). For
such trees, path-dependent TreeSHAP has a closed form per leaf: with ``a_j`` = 1 when the
row satisfies the leaf's conditions on feature ``j`` and ``r_j`` = the product of the
cover ratios of those splits, a leaf of value ``v``

- on one feature ``j`` adds ``v·(a_j − r_j)`` to φ_j and ``v·r_j`` to the bias;
- on two features ``j, k`` adds ``½v·(a_j − r_j)(a_k + r_k)`` to φ_j, the mirror image to
  φ_k, and ``v·r_j·r_k`` to the bias.

Both only depend on which threshold interval of ``j`` (and ``k``) the row falls into, so
:func:`compile_explainer` sums every leaf of every member (weighted as the voting ensemble
weights them) into one table per feature and per feature pair, indexed by the row's bin.
Explaining is then a ``searchsorted`` per feature and a few gathers per pair; predictions
are the contributions' row sums. Numbers equal the libraries' own ``pred_contribs`` and
``predict`` (tests compare them); a model that is not pairwise gets ``None`` and scoring
falls back to the native implementations.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A split on a tree path: feature, cut (a value goes left when it is < cut, compared as
# float64), whether a missing (NaN) value goes left, whether this path went left, and the
# cover ratio child / parent of that edge. Each library's own comparison (xgboost: float32
# ``<``, lightgbm: float64 ``<=``) is rewritten into this one form when the trees are read,
# so every feature needs one ``searchsorted`` whatever the mix of members.
_Edge = tuple[int, float, bool, bool, float]


@dataclass
class _Leaf:
    value: float
    path: list[_Edge]


@dataclass
class _Tree:
    weight: float
    leaves: list[_Leaf] = field(default_factory=list)


@dataclass(frozen=True)
class _PairTable:
    first: int
    second: int
    first_bins: np.ndarray  # global bin of ``first`` → row of the tables
    second_bins: np.ndarray  # global bin of ``second`` → column of the tables
    first_phi: np.ndarray
    second_phi: np.ndarray


@dataclass(frozen=True)
class PairwiseExplainer:
    """Compiled TreeSHAP tables of a pairwise tree ensemble (see the module docstring),
    over per-feature bins: a value's bin is the number of the feature's cuts at or below
    it, NaN has the extra last bin."""

    feature_count: int
    bias: float
    cuts: dict[int, np.ndarray]  # feature → its sorted unique cuts
    singles: dict[int, np.ndarray]  # feature → φ per bin
    pairs: list[_PairTable]

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """``(rows, feature_count + 1)`` contributions, the last column the bias; each row
        sums to the model's prediction."""
        bins = {}
        for feature, cuts in self.cuts.items():
            # lightgbm clamps inputs to ±1e300 before comparing (its "missing or not" splits
            # sit at 1e300, so inf goes with the numbers); xgboost's float32 comparisons
            # cannot tell 1e300 from inf. Clamped, both are read as the libraries read them.
            column = np.clip(features[:, feature], -LIGHTGBM_LIMIT, LIGHTGBM_LIMIT)
            bins[feature] = np.searchsorted(cuts, column, side="right")
            bins[feature][np.isnan(column)] = len(cuts) + 1
        # Built feature by feature (contiguous rows), returned as the usual rows × features.
        phi_by_feature = np.zeros((self.feature_count + 1, len(features)))
        phi_by_feature[-1] = self.bias
        for feature, table in self.singles.items():
            phi_by_feature[feature] += table[bins[feature]]
        for pair in self.pairs:
            cells = pair.first_bins[bins[pair.first]] * pair.first_phi.shape[1]
            cells += pair.second_bins[bins[pair.second]]
            phi_by_feature[pair.first] += pair.first_phi.ravel()[cells]
            phi_by_feature[pair.second] += pair.second_phi.ravel()[cells]
        return phi_by_feature.T


def compile_explainer(estimator: Any, feature_count: int) -> PairwiseExplainer | None:
    """Tables for a fitted xgboost/lightgbm model or a voting ensemble of them, or ``None``
    when a tree path uses more than two features (or a split kind this does not cover).
    Contributions are on the models' margin scale: the log of the forecast for the
    log-link models training fits."""
    try:
        trees, bias = _trees(estimator, 1.0)
        return _compile(feature_count, [(t.weight, leaf) for t in trees for leaf in t.leaves], bias)
    except _NotPairwise:
        return None


class _NotPairwise(Exception):
    pass


def _trees(estimator: Any, weight: float) -> tuple[list[_Tree], float]:
    """Every tree of ``estimator`` with the weight its output gets, and the constant part."""
    if hasattr(estimator, "named_estimators_"):
        weights = estimator.weights or [1.0] * len(estimator.estimators_)
        total = float(sum(weights))
        trees: list[_Tree] = []
        bias = 0.0
        for member, member_weight in zip(estimator.estimators_, weights, strict=True):
            member_trees, member_bias = _trees(member, weight * member_weight / total)
            trees.extend(member_trees)
            bias += member_bias
        return trees, bias
    if hasattr(estimator, "booster_"):
        return [
            _Tree(weight, _lightgbm_leaves(tree["tree_structure"]))
            for tree in estimator.booster_.dump_model()["tree_info"]
        ], 0.0
    if hasattr(estimator, "get_booster"):
        model = json.loads(estimator.get_booster().save_raw("json"))["learner"]
        base_score = float(model["learner_model_param"]["base_score"].strip("[]"))
        objective = model["objective"]["name"]
        if objective in _LOG_LINK_OBJECTIVES:  # xgboost keeps their base on the output scale
            base_score = math.log(base_score)
        elif objective != "reg:squarederror":
            raise _NotPairwise
        return [
            _Tree(weight, _xgboost_leaves(tree))
            for tree in model["gradient_booster"]["model"]["trees"]
        ], weight * base_score
    raise _NotPairwise


_LOG_LINK_OBJECTIVES = ("reg:tweedie", "count:poisson", "reg:gamma")


def _xgboost_leaves(tree: dict[str, Any]) -> list[_Leaf]:
    if any(tree["split_type"]):
        raise _NotPairwise  # categorical splits
    left, right = tree["left_children"], tree["right_children"]
    condition, cover = tree["split_conditions"], tree["sum_hessian"]
    feature, default_left = tree["split_indices"], tree["default_left"]
    leaves = []
    stack: list[tuple[int, list[_Edge]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if left[node] == -1:
            leaves.append(_Leaf(condition[node], path))
            continue
        cut = float32_cut(condition[node])
        nan_left = bool(default_left[node])
        for child, went_left in ((left[node], True), (right[node], False)):
            edge = (feature[node], cut, nan_left, went_left, cover[child] / cover[node])
            stack.append((child, [*path, edge]))
    return leaves


def _lightgbm_leaves(root: dict[str, Any]) -> list[_Leaf]:
    leaves = []
    stack: list[tuple[dict[str, Any], list[_Edge]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if "leaf_value" in node:
            leaves.append(_Leaf(node["leaf_value"], path))
            continue
        if node["decision_type"] != "<=" or node["missing_type"] not in ("None", "NaN"):
            raise _NotPairwise  # categorical or zero-as-missing splits
        threshold = node["threshold"]
        cut = float(np.nextafter(threshold, np.inf))  # x <= threshold  ⇔  x < cut
        # ``missing_type: None`` (no NaN seen in training): lightgbm compares NaN as 0.0.
        nan_left = threshold >= 0.0 if node["missing_type"] == "None" else node["default_left"]
        count = node["internal_count"]
        for key, went_left in (("left_child", True), ("right_child", False)):
            child = node[key]
            ratio = child.get("internal_count", child.get("leaf_count")) / count
            stack.append((child, [*path, (node["split_feature"], cut, nan_left, went_left, ratio)]))
    return leaves


@dataclass
class _Condition:
    """What a leaf's path requires of one feature: a bin interval ``[low, high)`` (NaN has
    its own bin, allowed or not) and the product of those splits' cover ratios."""

    low: int
    high: int
    nan_allowed: bool = True
    ratio: float = 1.0


LIGHTGBM_LIMIT = 1e300  # lightgbm's AvoidInf bound on feature values


def float32_cut(threshold: float) -> float:
    """The float64 ``c`` with ``float32(x) < threshold ⇔ x < c``, for xgboost's splits (it
    rounds inputs to the nearest float32, ties to even, and compares there)."""
    upper = np.float32(threshold)
    lower = np.nextafter(upper, np.float32(-np.inf))
    middle = (float(lower) + float(upper)) / 2  # exact: one bit more than a float32
    # A value exactly halfway rounds to whichever neighbour has an even last bit.
    upper_is_even = int(upper.view(np.uint32)) % 2 == 0
    return middle if upper_is_even else float(np.nextafter(middle, np.inf))


def _compile(
    feature_count: int, leaves: list[tuple[float, _Leaf]], bias: float
) -> PairwiseExplainer:
    collected: dict[int, set[float]] = defaultdict(set)
    for _, leaf in leaves:
        for feature, cut, *_ in leaf.path:
            collected[feature].add(cut)
    cuts = {feature: np.array(sorted(values)) for feature, values in collected.items()}
    position = {
        (feature, float(cut)): index
        for feature, feature_cuts in cuts.items()
        for index, cut in enumerate(feature_cuts)
    }
    # Bins of a feature with n cuts: 0..n by value (a value goes left of cut i exactly when
    # its bin is <= i), n + 1 for NaN.
    singles: dict[int, list[tuple[float, _Condition]]] = defaultdict(list)
    pairs: dict[tuple[int, int], list[tuple[float, _Condition, _Condition]]] = defaultdict(list)
    for weight, leaf in leaves:
        value = weight * leaf.value
        conditions: dict[int, _Condition] = {}
        for feature, cut, nan_left, went_left, ratio in leaf.path:
            condition = conditions.setdefault(feature, _Condition(0, len(cuts[feature]) + 1))
            split_bin = position[feature, cut] + 1
            if went_left:
                condition.high = min(condition.high, split_bin)
            else:
                condition.low = max(condition.low, split_bin)
            condition.nan_allowed &= nan_left == went_left
            condition.ratio *= ratio
        if len(conditions) > 2:
            raise _NotPairwise
        ordered = sorted(conditions.items())
        if len(ordered) == 1:
            singles[ordered[0][0]].append((value, ordered[0][1]))
        elif len(ordered) == 2:
            pairs[ordered[0][0], ordered[1][0]].append((value, ordered[0][1], ordered[1][1]))
        bias += value * math.prod(c.ratio for _, c in ordered)
    return PairwiseExplainer(
        feature_count=feature_count,
        bias=bias,
        cuts=cuts,
        singles={f: _single_table(len(cuts[f]), rows) for f, rows in singles.items()},
        pairs=[_pair_table(first, second, cuts, rows) for (first, second), rows in pairs.items()],
    )


def _single_table(edge_count: int, rows: list[tuple[float, _Condition]]) -> np.ndarray:
    """φ per bin of one feature: Σ v·(a − r) over its single-feature leaves."""
    values = np.array([value for value, _ in rows])
    steps = np.zeros(edge_count + 2)
    np.add.at(steps, [c.low for _, c in rows], values)
    np.add.at(steps, [c.high for _, c in rows], -values)
    table = np.cumsum(steps)
    table[-1] = sum(value for value, c in rows if c.nan_allowed)
    return table - sum(value * c.ratio for value, c in rows)


def _local_masks(
    edge_count: int, conditions: list[_Condition]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature's bins merged where no leaf of the pair tells them apart: the map from
    its bins to the merged ones, each leaf's 0/1 mask over the merged bins, and the ratios."""
    cuts = np.unique([edge_count + 1, *(c.low for c in conditions), *(c.high for c in conditions)])
    cuts = cuts[cuts > 0]
    merged = np.searchsorted(cuts, np.arange(edge_count + 2), side="right")  # NaN → len(cuts)
    low = np.searchsorted(cuts, [c.low for c in conditions], side="right")[:, None]
    high = np.searchsorted(cuts, [c.high for c in conditions], side="right")[:, None]
    regular = np.arange(len(cuts))[None, :]
    nan = np.array([c.nan_allowed for c in conditions])[:, None]
    masks = np.hstack([(regular >= low) & (regular < high), nan]).astype(np.float64)
    return merged, masks, np.array([c.ratio for c in conditions])[:, None]


def _pair_table(
    first: int,
    second: int,
    cuts: dict[int, np.ndarray],
    rows: list[tuple[float, _Condition, _Condition]],
) -> _PairTable:
    first_bins, first_masks, first_ratios = _local_masks(len(cuts[first]), [row[1] for row in rows])
    second_bins, second_masks, second_ratios = _local_masks(
        len(cuts[second]), [row[2] for row in rows]
    )
    half = 0.5 * np.array([row[0] for row in rows])[:, None]
    return _PairTable(
        first,
        second,
        first_bins,
        second_bins,
        first_phi=(half * (first_masks - first_ratios)).T @ (second_masks + second_ratios),
        second_phi=(half * (first_masks + first_ratios)).T @ (second_masks - second_ratios),
    )
