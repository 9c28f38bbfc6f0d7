"""Generalization hierarchies for quasi-identifiers (ARX-style), shared by Mondrian and the metrics.

Two kinds, one interface used by the partitioning algorithm:

- ``CategoricalHierarchy``: a taxonomy tree loaded from an ARX CSV (``;``-separated, column 0 the
  original value, column i its generalization at level i, the last column usually ``*``).
  Leaves are numbered in depth-first order, so every node covers a *contiguous* range of leaf codes
  and the lowest common ancestor of any set of leaves is the LCA of its smallest and largest code.
  That turns "which node does this class generalize to" into a min/max aggregation, exactly like
  an interval for a numeric attribute.
- ``IntervalHierarchy``: an ordered numeric attribute (age, income); a class generalizes to the
  interval ``[min-max]`` of its values.

Both expose ``encode`` (values -> numeric codes), ``cost(lo, hi)`` (normalized loss in [0, 1] of a
class whose codes span lo..hi, the GCP/NCP cell penalty) and ``labels(lo, hi)`` (the released
string). Everything is vectorized over numpy arrays because the local Mondrian phase evaluates
thousands of candidate classes.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

SUPPRESSED = "*"
_LCA_TABLE_MAX_LEAVES = 1024


class HierarchyError(ValueError):
    """A hierarchy file that is not a tree, or a value the hierarchy does not know."""


def _tree_rows(name: str, rows: Sequence[Sequence[str]]) -> tuple[list[list[str]], int]:
    """The CSV rows stripped and checked (same width, unique original values), with an implicit
    ``*`` root level when the last column is not one single value: (rows, levels per row)."""
    rows = [[cell.strip() for cell in row] for row in rows if row and any(c.strip() for c in row)]
    if not rows:
        raise HierarchyError(f"hierarchy {name!r} is empty")
    width = len(rows[0])
    for row in rows:
        if len(row) != width:
            raise HierarchyError(
                f"hierarchy {name!r}: row {row!r} has {len(row)} levels, expected {width}")
    leaves = [row[0] for row in rows]
    if len(set(leaves)) != len(leaves):
        dupes = sorted({v for v in leaves if leaves.count(v) > 1})
        raise HierarchyError(f"hierarchy {name!r}: duplicate original values {dupes[:5]}")
    # One root, so that the LCA always exists.
    if len({row[-1] for row in rows}) > 1:
        return [row + [SUPPRESSED] for row in rows], width + 1
    return rows, width


def _dfs_order(paths: list[tuple[str, ...]], width: int) -> list[int]:
    """Row indexes in depth-first order of the tree, siblings in first-appearance order (stable)."""
    order: dict[tuple[str, ...], int] = {}
    for path in paths:
        for depth in range(1, width + 1):
            order.setdefault(path[:depth], len(order))
    return sorted(range(len(paths)), key=lambda i: tuple(order[paths[i][:depth]] for depth in range(1, width + 1)))


class CategoricalHierarchy:
    """A generalization tree over the values of one categorical attribute.

    Node ids are integers; node 0.. are assigned so that the leaves are 0..n_leaves-1 in DFS order
    (leaf id == leaf code). ``ancestors[code, level]`` is the node id of the ancestor at ``level``
    (level 0 = the leaf itself, level ``height`` = the root).
    """

    def __init__(self, name: str, rows: Sequence[Sequence[str]]):
        self.name = name
        rows, width = _tree_rows(name, rows)
        # Nodes are identified by their path from the root: the same label under two different
        # parents is two different nodes (the CSV is only required to describe a tree by paths).
        paths = [tuple(reversed(row)) for row in rows]  # root first
        sorted_rows = _dfs_order(paths, width)
        self.leaves: list[str] = [rows[i][0] for i in sorted_rows]
        self.n_leaves = len(self.leaves)
        self.height = width - 1
        self._code = {value: code for code, value in enumerate(self.leaves)}
        labels = self._build_nodes([paths[i] for i in sorted_rows], width)
        # Number of leaves (original values) each node covers: the basis of GCP/NCP.
        self.node_leaf_count = self.node_hi - self.node_lo + 1
        denominator = max(self.n_leaves - 1, 1)
        self.node_cost = (self.node_leaf_count - 1) / denominator
        # Mondrian asks for millions of LCAs of small domains: a lookup table when it fits (8 MB).
        self._lca_table = None
        if self.n_leaves <= _LCA_TABLE_MAX_LEAVES:
            grid_lo, grid_hi = np.meshgrid(np.arange(self.n_leaves), np.arange(self.n_leaves), indexing="ij")
            self._lca_table = self._lca_by_levels(grid_lo.ravel(), grid_hi.ravel()).reshape(
                self.n_leaves, self.n_leaves).astype(np.int32)
        self._label_cost: dict[str, float] = {}
        for node in range(len(labels)):  # an ambiguous label keeps its largest (safest) cost
            label = labels[node]
            self._label_cost[label] = max(self._label_cost.get(label, 0.0), float(self.node_cost[node]))

    def _build_nodes(self, leaf_paths: list[tuple[str, ...]], width: int) -> list[str]:
        """Number the nodes (leaves first, in DFS order, so leaf id == leaf code) and fill the node
        arrays and ``ancestors``; returns the node labels."""
        node_of: dict[tuple[str, ...], int] = {}
        labels: list[str] = []
        levels: list[int] = []
        lo: list[int] = []
        hi: list[int] = []
        ancestors = np.zeros((self.n_leaves, width), dtype=np.int64)
        for code, path in enumerate(leaf_paths):
            for level in range(width):  # level 0 = leaf
                key = path[: width - level]
                node = node_of.get(key)
                if node is None:
                    node = len(labels)
                    node_of[key] = node
                    labels.append(key[-1])
                    levels.append(level)
                    lo.append(code)
                    hi.append(code)
                else:
                    hi[node] = code
                ancestors[code, level] = node
        self.node_labels = np.array(labels, dtype=object)
        self.node_levels = np.array(levels, dtype=np.int64)
        self.node_lo = np.array(lo, dtype=np.int64)
        self.node_hi = np.array(hi, dtype=np.int64)
        self.ancestors = ancestors
        self.root = int(ancestors[0, -1])
        return labels

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None, delimiter: str = ";") -> "CategoricalHierarchy":
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter))
        return cls(name or path.stem, rows)

    @classmethod
    def from_mapping(cls, name: str, mapping: dict[str, Sequence[str]]) -> "CategoricalHierarchy":
        """``{value: [level1, level2, ...]}``, the same information as one CSV row per value."""
        return cls(name, [[value, *parents] for value, parents in mapping.items()])

    @classmethod
    def flat(cls, name: str, values: Iterable[str]) -> "CategoricalHierarchy":
        """Two-level hierarchy: every value generalizes directly to ``*``."""
        return cls(name, [[str(v), SUPPRESSED] for v in values])

    # --- queries ------------------------------------------------------------------------------
    kind = "categorical"

    @property
    def domain_size(self) -> int:
        return self.n_leaves

    def __contains__(self, value: object) -> bool:
        return str(value) in self._code

    def code(self, value: object) -> int:
        try:
            return self._code[str(value)]
        except KeyError:
            raise HierarchyError(f"value {value!r} is not in hierarchy {self.name!r}") from None

    def ancestors_of(self, value: object) -> list[str]:
        """Labels of ``value`` and its generalizations, level 0 (itself) up to the root."""
        return [str(self.node_labels[n]) for n in self.ancestors[self.code(value)]]

    def generalize(self, value: object, level: int) -> str:
        return self.ancestors_of(value)[min(level, self.height)]

    def leaf_count(self, label: str, level: int | None = None) -> int:
        """Number of original values covered by the node ``label`` (optionally at ``level``)."""
        mask = self.node_labels == label
        if level is not None:
            mask &= self.node_levels == level
        if not mask.any():
            raise HierarchyError(f"{label!r} is not a node of hierarchy {self.name!r}")
        return int(self.node_leaf_count[mask].max())

    def label_costs(self) -> dict[str, float]:
        """Released label -> GCP cell penalty, for every node (used by the distributed metrics)."""
        return dict(self._label_cost)

    # --- the interface used by the partitioning algorithm -------------------------------------
    def encode(self, values: pd.Series | np.ndarray) -> np.ndarray:
        series = pd.Series(values).astype(str)
        codes = series.map(self._code)
        if codes.isna().any():
            unknown = sorted(series[codes.isna()].unique())[:5]
            raise HierarchyError(f"values {unknown} are not in hierarchy {self.name!r}")
        return codes.to_numpy(dtype=np.int64)

    def _lca_by_levels(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        anc_lo = self.ancestors[lo]
        same = anc_lo == self.ancestors[hi]
        level = np.argmax(same, axis=-1)  # the root level is always equal, so argmax is defined
        return anc_lo[np.arange(len(lo)), level]

    def lca(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Node id of the lowest common ancestor of leaf codes ``lo`` and ``hi`` (vectorized)."""
        lo = np.asarray(lo, dtype=np.int64).ravel()
        hi = np.asarray(hi, dtype=np.int64).ravel()
        if self._lca_table is not None:
            return self._lca_table[lo, hi]
        return self._lca_by_levels(lo, hi)

    def cost(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return self.node_cost[self.lca(lo, hi)]

    def labels(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return self.node_labels[self.lca(lo, hi)]

    def child_groups(self, codes: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Id of the child of LCA(lo, hi) that each code falls under: the categorical split."""
        node = int(self.lca(np.array([lo]), np.array([hi]))[0])
        level = int(self.node_levels[node])
        if level == 0:
            return np.zeros(len(codes), dtype=np.int64)
        return self.ancestors[codes, level - 1]

    def __repr__(self) -> str:
        return f"CategoricalHierarchy({self.name!r}, leaves={self.n_leaves}, height={self.height})"


@dataclass(frozen=True)
class IntervalHierarchy:
    """An ordered numeric attribute generalized to the interval [min-max] of each class.

    ``lower``/``upper`` fix the domain used to normalize the loss; left as None they are taken
    from the data (``with_domain``), which is what GCP's definition asks for.
    """

    name: str
    lower: float | None = None
    upper: float | None = None
    integer: bool = True

    kind = "numeric"

    def with_domain(self, lower: float, upper: float) -> "IntervalHierarchy":
        lower = float(lower) if self.lower is None else self.lower
        upper = float(upper) if self.upper is None else self.upper
        return IntervalHierarchy(self.name, lower, upper, self.integer)

    @property
    def width(self) -> float:
        if self.lower is None or self.upper is None:
            raise HierarchyError(f"interval hierarchy {self.name!r} has no domain yet (with_domain)")
        return float(self.upper - self.lower)

    def encode(self, values: pd.Series | np.ndarray) -> np.ndarray:
        codes = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(codes).any():
            raise HierarchyError(f"attribute {self.name!r} has null or non-numeric values")
        return codes

    def cost(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        width = self.width
        span = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
        return span / width if width > 0 else np.zeros_like(span)

    def format(self, value: float) -> str:
        if self.integer and float(value).is_integer():
            return str(int(value))
        return repr(float(value))

    def labels(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        out = np.empty(len(lo), dtype=object)
        for i, (a, b) in enumerate(zip(np.asarray(lo).tolist(), np.asarray(hi).tolist())):
            out[i] = self.format(a) if a == b else f"[{self.format(a)}-{self.format(b)}]"
        return out

    @staticmethod
    def parse(label: str) -> tuple[float, float]:
        """Inverse of ``labels``: ``"[25-29]"`` -> (25, 29), ``"31"`` -> (31, 31)."""
        text = label.strip()
        if text.startswith("[") and text.endswith("]"):
            body = text[1:-1]
            # The separator is the first '-' that is not a sign: "[-5--1]" -> (-5, -1).
            cut = body.index("-", 1)
            return float(body[:cut]), float(body[cut + 1:])
        return float(text), float(text)


Hierarchy = CategoricalHierarchy | IntervalHierarchy


def load_hierarchies(paths: dict[str, str | Path]) -> dict[str, CategoricalHierarchy]:
    """``{attribute: csv path}`` -> ``{attribute: CategoricalHierarchy}``."""
    return {name: CategoricalHierarchy.from_csv(path, name=name) for name, path in paths.items()}
