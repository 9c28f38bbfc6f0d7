"""Mondrian's local phase: pure numpy over the distinct tuples of one partition (run on an executor
by ``anonymizers.mondrian`` through ``applyInPandas``, or in memory by tests).

Prefix/suffix min-max scans evaluate every cut of an attribute in one pass; a categorical
attribute can also split into the children of the partition's taxonomy node; optional suppression
removes whole tuples greedily by loss gain per suppressed row. See anonymizers/mondrian.py for the
algorithm and the distributed phase."""
from __future__ import annotations

import heapq
import math
from typing import Sequence

import numpy as np
import pandas as pd

from anonymizers.hierarchy import SUPPRESSED, Hierarchy
from anonymizers.privacy_models import ClassStats, KAnonymity, PrivacyModel, holds_all


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def cost_matrix(hierarchies: Sequence[Hierarchy], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per-class, per-attribute GCP penalty of classes whose codes span ``lo..hi`` ([g, d])."""
    out = np.empty(lo.shape, dtype=np.float64)
    for j, h in enumerate(hierarchies):
        if h.kind == "categorical":
            out[:, j] = h.cost(lo[:, j].astype(np.int64), hi[:, j].astype(np.int64))
        else:
            out[:, j] = h.cost(lo[:, j], hi[:, j])
    return out


def _running_count(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each position i, the total weight of value s[i] among positions 0..i."""
    order = np.argsort(s, kind="stable")
    ws, ss = w[order], s[order]
    cum = np.cumsum(ws)
    start = np.r_[True, ss[1:] != ss[:-1]]
    # Weight accumulated before each value's group, carried forward (monotone, weights > 0).
    base = np.maximum.accumulate(np.where(start, cum - ws, 0.0))
    out = np.empty_like(cum)
    out[order] = cum - base
    return out


def _prefix_stats(w: np.ndarray, s: np.ndarray | None) -> ClassStats:
    """Stats of every prefix 0..i of a sequence of tuples (size, distinct and entropy of s)."""
    size = np.cumsum(w)
    if s is None:
        return ClassStats(size)
    first = np.zeros(len(s), dtype=bool)
    first[np.unique(s, return_index=True)[1]] = True
    distinct = np.cumsum(first)
    incl = _running_count(s, w)
    # sum over values of c*log(c), updated as each tuple adds its weight to its value's count.
    nlogn = np.cumsum(_xlogx(incl) - _xlogx(incl - w))
    entropy = np.log(size) - nlogn / size
    return ClassStats(size, distinct, entropy)


def _select(stats: ClassStats, positions: np.ndarray) -> ClassStats:
    return ClassStats(*(None if a is None else a[positions] for a in (stats.size, stats.distinct, stats.entropy)))


def _group_stats(labels: np.ndarray, n_groups: int, w: np.ndarray, s: np.ndarray | None) -> ClassStats:
    size = np.bincount(labels, weights=w, minlength=n_groups)
    if s is None:
        return ClassStats(size)
    n_values = int(s.max()) + 1
    keys, inverse = np.unique(labels * n_values + s, return_inverse=True)
    counts = np.bincount(inverse, weights=w)
    group = keys // n_values
    distinct = np.bincount(group, minlength=n_groups)
    nlogn = np.bincount(group, weights=_xlogx(counts), minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(size > 0, np.log(np.where(size > 0, size, 1)) - nlogn / np.where(size > 0, size, 1), 0)
    return ClassStats(size, distinct, entropy)


def merge_invalid_groups(labels: np.ndarray, w: np.ndarray, s: np.ndarray | None,
                         models: Sequence[PrivacyModel]) -> np.ndarray | None:
    """Make every group satisfy the models: invalid groups are pooled into one remainder, and a
    remainder that is still invalid is merged into the smallest valid group (repeatedly). Returns
    dense labels, or None when fewer than two groups survive (no split)."""
    labels = np.unique(labels, return_inverse=True)[1]
    while True:
        n_groups = int(labels.max()) + 1
        if n_groups < 2:
            return None
        stats = _group_stats(labels, n_groups, w, s)
        valid = holds_all(models, stats)
        if valid.all():
            return labels
        invalid = np.nonzero(~valid)[0]
        pooled = np.where(np.isin(labels, invalid), invalid[0], labels)
        pooled = np.unique(pooled, return_inverse=True)[1]
        n_pooled = int(pooled.max()) + 1
        pstats = _group_stats(pooled, n_pooled, w, s)
        pvalid = holds_all(models, pstats)
        if pvalid.all():
            return pooled if n_pooled >= 2 else None
        bad = int(np.nonzero(~pvalid)[0][0])
        good = np.nonzero(pvalid)[0]
        if len(good) == 0:
            return None
        target = int(good[np.argmin(pstats.size[good])])
        labels = np.unique(np.where(pooled == bad, target, pooled), return_inverse=True)[1]


class _LocalMondrian:
    """Mondrian on one partition's distinct tuples (codes [m, d], weights [m], sensitive codes)."""

    def __init__(self, codes: np.ndarray, weights: np.ndarray, hierarchies: Sequence[Hierarchy],
                 models: Sequence[PrivacyModel], sensitive: np.ndarray | None):
        self.X = np.asarray(codes, dtype=np.float64)
        self.w = np.asarray(weights, dtype=np.float64)
        self.h = list(hierarchies)
        self.models = list(models)
        self.s = None if sensitive is None else np.asarray(sensitive, dtype=np.int64)
        self.d = self.X.shape[1]
        self.k = max([m.k for m in self.models if isinstance(m, KAnonymity)], default=1)

    def valid(self, stats: ClassStats) -> np.ndarray:
        return holds_all(self.models, stats)

    def loss(self, idx_groups: list[np.ndarray]) -> float:
        lo = np.array([self.X[g].min(axis=0) for g in idx_groups])
        hi = np.array([self.X[g].max(axis=0) for g in idx_groups])
        sizes = np.array([self.w[g].sum() for g in idx_groups])
        return float((cost_matrix(self.h, lo, hi).sum(axis=1) * sizes).sum())

    def best_cut(self, idx: np.ndarray) -> tuple[float, list[np.ndarray]] | None:
        """Best binary cut over all attributes and positions, by total loss of the two sides."""
        sub, w = self.X[idx], self.w[idx]
        s = None if self.s is None else self.s[idx]
        best: tuple[float, list[np.ndarray]] | None = None
        for j in range(self.d):
            order = np.argsort(sub[:, j], kind="stable")
            xs = sub[order]
            # Cuts only between different values of j: classes do not overlap on the cut attribute.
            boundary = np.nonzero(xs[:-1, j] != xs[1:, j])[0]
            if len(boundary) == 0:
                continue
            ws = w[order]
            ss = None if s is None else s[order]
            left = _prefix_stats(ws, ss)
            right = _prefix_stats(ws[::-1], None if ss is None else ss[::-1])
            # right stats for the suffix starting at i+1 live at reversed position m-2-i.
            ri = len(ws) - 2 - boundary
            ok = self.valid(_select(left, boundary)) & self.valid(_select(right, ri))
            cand = boundary[ok]
            if len(cand) == 0:
                continue
            pmin = np.minimum.accumulate(xs, axis=0)
            pmax = np.maximum.accumulate(xs, axis=0)
            smin = np.minimum.accumulate(xs[::-1], axis=0)[::-1]
            smax = np.maximum.accumulate(xs[::-1], axis=0)[::-1]
            nl = left.size[cand]
            nr = left.size[-1] - nl
            total = (cost_matrix(self.h, pmin[cand], pmax[cand]).sum(axis=1) * nl
                     + cost_matrix(self.h, smin[cand + 1], smax[cand + 1]).sum(axis=1) * nr)
            i = int(np.argmin(total))
            if best is None or total[i] < best[0]:
                c = cand[i]
                best = (float(total[i]), [idx[order[: c + 1]], idx[order[c + 1:]]])
        return best

    def best_taxonomy_split(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        best = None
        for j, h in enumerate(self.h):
            if h.kind != "categorical" or lo[j] == hi[j]:
                continue
            groups = h.child_groups(self.X[idx, j].astype(np.int64), int(lo[j]), int(hi[j]))
            labels = merge_invalid_groups(groups, self.w[idx], None if self.s is None else self.s[idx], self.models)
            if labels is None:
                continue
            parts = [idx[labels == g] for g in range(int(labels.max()) + 1)]
            total = self.loss(parts)
            if best is None or total < best[0]:
                best = (total, parts)
        return best

    def class_valid(self, idx: np.ndarray) -> bool:
        stats = _group_stats(np.zeros(len(idx), dtype=np.int64), 1, self.w[idx],
                             None if self.s is None else self.s[idx])
        return bool(self.valid(stats)[0])

    def partition(self) -> list[np.ndarray]:
        """Leaves of the greedy top-down specialization: lists of tuple indices."""
        root = np.arange(len(self.w))
        if len(root) == 0 or not self.class_valid(root):
            return []  # no generalization can make this partition valid
        leaves: list[np.ndarray] = []
        stack = [root]
        while stack:
            idx = stack.pop()
            if self.w[idx].sum() < 2 * self.k or len(idx) < 2:
                leaves.append(idx)
                continue
            sub = self.X[idx]
            lo, hi = sub.min(axis=0), sub.max(axis=0)
            candidates = [c for c in (self.best_cut(idx), self.best_taxonomy_split(idx, lo, hi)) if c]
            if not candidates:
                leaves.append(idx)
                continue
            _, parts = min(candidates, key=lambda c: c[0])
            stack.extend(reversed(parts))
        return leaves

    def suppress(self, leaves: list[np.ndarray], budget: float) -> tuple[list[np.ndarray], np.ndarray]:
        """Greedily remove whole tuples from classes while it lowers the total loss (a suppressed
        row costs ``d``: every QI cell becomes ``*``) and the budget (rows) allows."""
        suppressed = np.zeros(len(self.w), dtype=bool)
        if budget < 1:
            return leaves, suppressed
        leaves = [np.array(leaf) for leaf in leaves]
        budget_left = [float(budget)]

        def best_removal(leaf: np.ndarray):
            """(gain per suppressed row, position) of the best single-tuple removal, or None."""
            if len(leaf) < 2:
                return None
            sub, w = self.X[leaf], self.w[leaf]
            n = w.sum()
            before = cost_matrix(self.h, sub.min(0)[None], sub.max(0)[None]).sum() * n
            # Leave-one-out boxes from prefix/suffix minima and maxima.
            inf = np.full((1, self.d), np.inf)
            pmin = np.vstack([inf, np.minimum.accumulate(sub, 0)[:-1]])
            pmax = np.vstack([-inf, np.maximum.accumulate(sub, 0)[:-1]])
            smin = np.vstack([np.minimum.accumulate(sub[::-1], 0)[::-1][1:], inf])
            smax = np.vstack([np.maximum.accumulate(sub[::-1], 0)[::-1][1:], -inf])
            lo, hi = np.minimum(pmin, smin), np.maximum(pmax, smax)
            rest = n - w
            ok = np.array([w[t] <= budget_left[0] and self.class_valid(np.delete(leaf, t))
                           for t in range(len(leaf))])
            if not ok.any():
                return None
            after = cost_matrix(self.h, lo, hi).sum(axis=1) * rest + self.d * w
            gain = np.where(ok, before - after, -np.inf)
            t = int(np.argmax(gain / w))
            if gain[t] <= 1e-12:
                return None
            return gain[t] / w[t], t

        heap = []
        for i, leaf in enumerate(leaves):
            found = best_removal(leaf)
            if found:
                heapq.heappush(heap, (-found[0], i, found[1], len(leaf)))
        while heap and budget_left[0] >= 1:
            _, i, t, size = heapq.heappop(heap)
            leaf = leaves[i]
            if len(leaf) != size:  # stale entry: this class already changed
                continue
            if self.w[leaf[t]] > budget_left[0]:
                found = best_removal(leaf)
                if found:
                    heapq.heappush(heap, (-found[0], i, found[1], len(leaf)))
                continue
            budget_left[0] -= self.w[leaf[t]]
            suppressed[leaf[t]] = True
            leaves[i] = np.delete(leaf, t)
            found = best_removal(leaves[i])
            if found:
                heapq.heappush(heap, (-found[0], i, found[1], len(leaves[i])))
        return leaves, suppressed


def partition_tuples(codes: np.ndarray, weights: np.ndarray, hierarchies: Sequence[Hierarchy],
                     models: Sequence[PrivacyModel], sensitive: np.ndarray | None = None,
                     max_suppressed: float = 0) -> np.ndarray:
    """Mondrian on distinct tuples in memory: class index per tuple, -1 for a suppressed tuple.

    ``codes`` [m, d] are ``hierarchy.encode`` outputs, ``weights`` the number of rows per tuple,
    ``sensitive`` dense integer codes of the sensitive attribute (for l-diversity)."""
    local = _LocalMondrian(codes, weights, hierarchies, models, sensitive)
    leaves = local.partition()  # empty if the whole partition violates the models: suppressed
    labels = np.full(len(local.w), -1, dtype=np.int64)
    leaves, _ = local.suppress(leaves, max_suppressed)
    for i, leaf in enumerate(leaves):
        labels[leaf] = i
    return labels


def generalize_classes(codes: np.ndarray, labels: np.ndarray, hierarchies: Sequence[Hierarchy]) -> list[np.ndarray]:
    """Released strings per attribute for every tuple, from its class's min/max codes."""
    out = [np.full(len(labels), SUPPRESSED, dtype=object) for _ in hierarchies]
    kept = np.nonzero(labels >= 0)[0]
    if len(kept) == 0:
        return out
    order = kept[np.argsort(labels[kept], kind="stable")]
    sorted_labels = labels[order]
    starts = np.r_[0, np.nonzero(sorted_labels[1:] != sorted_labels[:-1])[0] + 1]
    lo = np.minimum.reduceat(codes[order], starts, axis=0)
    hi = np.maximum.reduceat(codes[order], starts, axis=0)
    class_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    for j, h in enumerate(hierarchies):
        if h.kind == "categorical":
            names = h.labels(lo[:, j].astype(np.int64), hi[:, j].astype(np.int64))
        else:
            names = h.labels(lo[:, j], hi[:, j])
        out[j][order] = names[class_of]
    return out


# =================================================================================================
# The pandas function Spark runs per partition

def local_phase(qis, keys, hierarchies, models, sensitive, suppression, out_schema, weight_column, suppressed_column):
    """The pandas function of the local phase, per partition of the distributed phase (a closure:
    pickled to the executors); the weight and suppressed-flag column names are the caller's."""
    names = [f.name for f in out_schema.fields]

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        # Deterministic order: the same input always yields the same classes, whatever the
        # order Spark delivers the group's rows in (the output may be recomputed per action).
        pdf = pdf.sort_values(keys, kind="mergesort").reset_index(drop=True)
        codes = np.column_stack([h.encode(pdf[q]) for q, h in zip(qis, hierarchies)]).astype(np.float64)
        weights = pdf[weight_column].to_numpy(dtype=np.float64)
        s_codes = None
        if sensitive is not None:
            s_codes = pd.factorize(pdf[sensitive], sort=True, use_na_sentinel=False)[0]
        budget = math.floor(suppression * weights.sum() + 1e-9)
        labels = partition_tuples(codes, weights, hierarchies, models, s_codes, budget)
        released = generalize_classes(codes, labels, hierarchies)
        out = {f"__wasure_key{i}": pdf[c] for i, c in enumerate(keys)}
        out.update({f"__wasure_gen{j}": values for j, values in enumerate(released)})
        out[suppressed_column] = labels < 0
        return pd.DataFrame(out, columns=names)

    return run
