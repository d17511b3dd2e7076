"""Exact TreeSHAP for pairwise-constrained tree ensembles, at table-lookup speed.

Native TreeSHAP (``pred_contribs`` / ``pred_contrib``) costs O(leaves × depth²) per tree
and row — hundreds of times a prediction — so explaining a million plots a night with it
takes hours on two cores. Training constrains every tree path to at most two distinct
features (xgboost/lightgbm ``interaction_constraints`` over feature pairs: a pairwise
additive model, within ~1% of the unconstrained models' accuracy on the sample data). For
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
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

XGBOOST_SPLITS = "xgboost"  # float32 comparison, x < threshold goes left
LIGHTGBM_SPLITS = "lightgbm"  # float64 comparison, x <= threshold goes left


@dataclass(frozen=True)
class _Split:
    feature: int
    threshold: float
    default_left: bool  # where a missing (NaN) value goes
    nan_as_zero: bool  # lightgbm ``missing_type: None`` compares NaN as 0.0


@dataclass
class _Leaf:
    value: float
    path: list[tuple[_Split, bool, float]]  # (split, went left, cover ratio of that edge)


@dataclass
class _Tree:
    splits: str  # XGBOOST_SPLITS or LIGHTGBM_SPLITS
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
class _Part:
    """Every leaf of one split convention, as lookup tables over per-feature bins."""

    splits: str
    thresholds: dict[int, np.ndarray]  # feature → sorted unique thresholds
    singles: dict[int, np.ndarray]  # feature → φ per bin
    pairs: list[_PairTable]

    def bins(self, features: np.ndarray) -> dict[int, np.ndarray]:
        """Per feature, each row's bin: the number of thresholds it lies right of; NaN gets
        the extra last bin."""
        found = {}
        for feature, thresholds in self.thresholds.items():
            column = features[:, feature]
            if self.splits == XGBOOST_SPLITS:
                index = np.searchsorted(thresholds, column.astype(np.float32), side="right")
            else:
                index = np.searchsorted(thresholds, column, side="left")
            index[np.isnan(column)] = len(thresholds) + 1
            found[feature] = index
        return found

    def add_contributions(self, features: np.ndarray, phi: np.ndarray) -> None:
        bins = self.bins(features)
        for feature, table in self.singles.items():
            phi[:, feature] += table[bins[feature]]
        for pair in self.pairs:
            rows = pair.first_bins[bins[pair.first]]
            columns = pair.second_bins[bins[pair.second]]
            phi[:, pair.first] += pair.first_phi[rows, columns]
            phi[:, pair.second] += pair.second_phi[rows, columns]


@dataclass(frozen=True)
class PairwiseExplainer:
    """Compiled TreeSHAP tables of a pairwise tree ensemble (see the module docstring)."""

    feature_count: int
    bias: float
    parts: tuple[_Part, ...]

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """``(rows, feature_count + 1)`` contributions, the last column the bias; each row
        sums to the model's prediction."""
        phi = np.zeros((len(features), self.feature_count + 1))
        phi[:, -1] = self.bias
        for part in self.parts:
            part.add_contributions(features, phi)
        return phi


def compile_explainer(estimator: Any, feature_count: int) -> PairwiseExplainer | None:
    """Tables for a fitted xgboost/lightgbm model or a voting ensemble of them, or ``None``
    when a tree path uses more than two features (or a split kind this does not cover)."""
    try:
        trees, bias = _trees(estimator, 1.0)
    except _NotPairwise:
        return None
    leaves_by_convention: dict[str, list[tuple[float, _Leaf]]] = defaultdict(list)
    for tree in trees:
        leaves_by_convention[tree.splits].extend((tree.weight, leaf) for leaf in tree.leaves)
    parts = []
    for splits, leaves in leaves_by_convention.items():
        try:
            part, part_bias = _compile_part(splits, leaves)
        except _NotPairwise:
            return None
        parts.append(part)
        bias += part_bias
    return PairwiseExplainer(feature_count=feature_count, bias=bias, parts=tuple(parts))


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
            _Tree(LIGHTGBM_SPLITS, weight, _lightgbm_leaves(tree["tree_structure"]))
            for tree in estimator.booster_.dump_model()["tree_info"]
        ], 0.0
    if hasattr(estimator, "get_booster"):
        model = json.loads(estimator.get_booster().save_raw("json"))["learner"]
        base_score = float(model["learner_model_param"]["base_score"].strip("[]"))
        return [
            _Tree(XGBOOST_SPLITS, weight, _xgboost_leaves(tree))
            for tree in model["gradient_booster"]["model"]["trees"]
        ], weight * base_score
    raise _NotPairwise


def _xgboost_leaves(tree: dict[str, Any]) -> list[_Leaf]:
    if any(tree["split_type"]):
        raise _NotPairwise  # categorical splits
    left, right = tree["left_children"], tree["right_children"]
    condition, cover = tree["split_conditions"], tree["sum_hessian"]
    leaves = []
    stack: list[tuple[int, list[tuple[_Split, bool, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if left[node] == -1:
            leaves.append(_Leaf(condition[node], path))
            continue
        split = _Split(
            tree["split_indices"][node],
            float(np.float32(condition[node])),
            bool(tree["default_left"][node]),
            nan_as_zero=False,
        )
        for child, went_left in ((left[node], True), (right[node], False)):
            stack.append((child, [*path, (split, went_left, cover[child] / cover[node])]))
    return leaves


def _lightgbm_leaves(root: dict[str, Any]) -> list[_Leaf]:
    leaves = []
    stack: list[tuple[dict[str, Any], list[tuple[_Split, bool, float]]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if "leaf_value" in node:
            leaves.append(_Leaf(node["leaf_value"], path))
            continue
        if node["decision_type"] != "<=" or node["missing_type"] not in ("None", "NaN"):
            raise _NotPairwise  # categorical or zero-as-missing splits
        split = _Split(
            node["split_feature"],
            node["threshold"],
            node["default_left"],
            nan_as_zero=node["missing_type"] == "None",
        )
        count = node["internal_count"]
        for key, went_left in (("left_child", True), ("right_child", False)):
            child = node[key]
            child_count = child.get("internal_count", child.get("leaf_count"))
            stack.append((child, [*path, (split, went_left, child_count / count)]))
    return leaves


def _compile_part(splits: str, leaves: list[tuple[float, _Leaf]]) -> tuple[_Part, float]:
    dtype = np.float32 if splits == XGBOOST_SPLITS else np.float64
    collected: dict[int, set[float]] = defaultdict(set)
    for _, leaf in leaves:
        for split, _, _ in leaf.path:
            collected[split.feature].add(split.threshold)
    thresholds = {f: np.array(sorted(values), dtype=dtype) for f, values in collected.items()}

    def went_left_mask(split: _Split) -> np.ndarray:
        """Over the feature's bins (NaN last): which bins this split sends left."""
        edges = thresholds[split.feature]
        index = int(np.searchsorted(edges, dtype(split.threshold)))
        mask = np.zeros(len(edges) + 2, dtype=bool)
        mask[: index + 1] = True
        mask[-1] = (split.threshold >= 0.0) if split.nan_as_zero else split.default_left
        return mask

    singles: dict[int, np.ndarray] = {}
    pair_rows: dict[tuple[int, int], list[tuple[float, np.ndarray, float, np.ndarray, float]]]
    pair_rows = defaultdict(list)
    bias = 0.0
    for weight, leaf in leaves:
        value = weight * leaf.value
        conditions = dict(_conditions(leaf, went_left_mask))
        if len(conditions) == 0:
            bias += value
        elif len(conditions) == 1:
            ((feature, (mask, ratio)),) = conditions.items()
            table = singles.setdefault(feature, np.zeros(len(mask)))
            table += value * (mask - ratio)
            bias += value * ratio
        elif len(conditions) == 2:
            (first, (first_mask, first_ratio)), (second, (second_mask, second_ratio)) = sorted(
                conditions.items()
            )
            pair_rows[first, second].append(
                (value, first_mask, first_ratio, second_mask, second_ratio)
            )
            bias += value * first_ratio * second_ratio
        else:
            raise _NotPairwise
    pairs = [_pair_table(first, second, rows) for (first, second), rows in pair_rows.items()]
    return _Part(splits, thresholds, singles, pairs), bias


def _conditions(leaf: _Leaf, went_left_mask: Any) -> Iterator[tuple[int, tuple[np.ndarray, float]]]:
    """Per feature on the leaf's path: the bins that reach the leaf and the cover ratio."""
    masks: dict[int, np.ndarray] = {}
    ratios: dict[int, float] = {}
    for split, went_left, ratio in leaf.path:
        left = went_left_mask(split)
        mask = left if went_left else ~left
        masks[split.feature] = masks[split.feature] & mask if split.feature in masks else mask
        ratios[split.feature] = ratios.get(split.feature, 1.0) * ratio
    for feature, mask in masks.items():
        yield feature, (mask.astype(np.float64), ratios[feature])


def _pair_table(
    first: int, second: int, rows: list[tuple[float, np.ndarray, float, np.ndarray, float]]
) -> _PairTable:
    values = np.array([row[0] for row in rows])
    first_masks, first_bins = np.unique(
        np.stack([row[1] for row in rows]), axis=1, return_inverse=True
    )
    second_masks, second_bins = np.unique(
        np.stack([row[3] for row in rows]), axis=1, return_inverse=True
    )
    first_ratios = np.array([row[2] for row in rows])[:, None]
    second_ratios = np.array([row[4] for row in rows])[:, None]
    half = 0.5 * values[:, None]
    return _PairTable(
        first,
        second,
        first_bins.ravel(),
        second_bins.ravel(),
        first_phi=(half * (first_masks - first_ratios)).T @ (second_masks + second_ratios),
        second_phi=(half * (first_masks + first_ratios)).T @ (second_masks - second_ratios),
    )
