"""Checking requests against a version's data contract, on the replica's fast path.

:func:`check` takes a parsed request (:class:`~loopml.serving.protocols.ModelInput`) and
answers the value violations it holds: ``missing`` (more rows missing a feature than its
allowance), ``out_of_range`` (a number past ``min``/``max``), ``unseen_category`` (a string
outside ``categories``). It is vectorized: the contract is compiled once per column order
into bound arrays, so a one-row numeric request costs a few numpy calls (~10 µs) and no
Python loop per feature. :func:`schema_violation` maps the parser's own refusals (wrong
type, unknown column, missing column or a null where the signature needs a value) to the
violations ``wrong_type``, ``extra_field`` and ``missing``: the model cannot score those, so
they are always refused, but they are counted like the others.

numpy and pydantic only (the contract model is :mod:`loopml.registry.contract`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from loopml.registry.contract import CATEGORICAL, NUMERIC, DataContract
from loopml.serving.errors import RequestError

VIOLATIONS_HEADER = "x-loopml-violations"
CONTRACT_REASON = "contract_violation"
VALUE_KINDS = ("missing", "out_of_range", "unseen_category")
SCHEMA_KINDS = ("wrong_type", "extra_field", "missing")
_SCHEMA_REASONS = {"wrong_type": "wrong_type", "extra_column": "extra_field", "unknown_input": "extra_field",
                   "missing_column": "missing"}


@dataclass(frozen=True, slots=True)
class Violation:
    """One feature breaking one rule in a request: in ``rows`` of its rows."""

    feature: str
    kind: str
    rows: int
    rule: str  # "alcohol.max"
    message: str  # "feature 'alcohol' is out of range: 99 > max 15.2 (rule alcohol.max)"

    def record(self) -> dict[str, Any]:
        """The capture record's form: ``{"feature", "kind", "rows"}``."""
        return {"feature": self.feature, "kind": self.kind, "rows": self.rows}


class _Checker:
    """A contract compiled for one column order: bound arrays for the numbers, sets for strings."""

    def __init__(self, contract: DataContract, columns: tuple[str, ...]) -> None:
        checked = [(i, name, contract.features[name]) for i, name in enumerate(columns)
                   if name in contract.features and contract.features[name].check]
        numeric = [(i, name, rule) for i, name, rule in checked if rule.type in NUMERIC or rule.type == "boolean"]
        self.position = {name: i for i, name in enumerate(columns)}
        self.index = np.array([i for i, _, _ in numeric], dtype=np.intp)
        self.all_columns = [i for i, _, _ in numeric] == list(range(len(columns)))
        self.names = [name for _, name, _ in numeric]
        self.low = np.array([-math.inf if r.min is None else r.min for _, _, r in numeric], dtype=np.float64)
        self.high = np.array([math.inf if r.max is None else r.max for _, _, r in numeric], dtype=np.float64)
        self.allowed = np.array([r.max_missing_share for _, _, r in numeric], dtype=np.float64)
        self.rules = [r for _, _, r in numeric]
        # every other checked feature (strings, dates…), checked one by one on a DataFrame
        self.others = [(name, rule, frozenset(rule.categories) if rule.categories is not None
                        and rule.type in CATEGORICAL else None)
                       for _, name, rule in checked if not (rule.type in NUMERIC or rule.type == "boolean")]

    def check(self, data) -> list[Violation]:
        if isinstance(data, np.ndarray):
            if data.ndim != 2 or not len(self.names):
                return []
            values = data if self.all_columns else data[:, self.index]
            found = self._numbers(values, len(data))
            return found
        found = []
        if len(self.names):
            values = np.column_stack([_as_float(_column(data, self.position[name])) for name in self.names])
            found = self._numbers(values, len(data))
        for name, rule, categories in self.others:
            found.extend(_other(name, rule, categories, _column(data, self.position[name]).tolist()))
        return found

    def _numbers(self, values: np.ndarray, rows: int) -> list[Violation]:
        missing = np.isnan(values)
        outside = (values < self.low) | (values > self.high)  # NaN compares False: not out of range
        if not missing.any() and not outside.any():
            return []
        found = []
        if missing.any():
            counts = missing.sum(axis=0)
            for j in np.flatnonzero(counts > np.ceil(self.allowed * rows)):
                found.append(_missing(self.names[j], self.rules[j].max_missing_share, int(counts[j]), rows))
        if outside.any():
            for j in np.flatnonzero(outside.any(axis=0)):
                column = values[:, j]
                first = column[outside[:, j]][0]
                rule, name = self.rules[j], self.names[j]
                if rule.max is not None and first > rule.max:
                    text, which = f"{_num(first)} > max {_num(rule.max)}", "max"
                else:
                    text, which = f"{_num(first)} < min {_num(rule.min)}", "min"
                found.append(Violation(name, "out_of_range", int(outside[:, j].sum()), f"{name}.{which}",
                                       f"feature {name!r} is out of range: {text} (rule {name}.{which})"))
        return found


def _column(frame, position: int) -> np.ndarray:
    """Column ``position`` of ``frame`` as an array. ``frame[name]`` builds a Series (~10 µs a
    column, most of a one-row check); pandas' own column accessor does not, where it exists."""
    get = getattr(frame, "_get_column_array", None)
    return get(position) if get is not None else frame.iloc[:, position].to_numpy()


def _as_float(values) -> np.ndarray:
    """A column of numbers (None or NaN where missing) as float64."""
    if getattr(values, "dtype", None) is not None and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _other(name: str, rule, categories: frozenset | None, values: list) -> list[Violation]:
    found = []
    missing = sum(1 for v in values if v is None or (isinstance(v, float) and v != v))
    if missing > math.ceil(rule.max_missing_share * len(values)):
        found.append(_missing(name, rule.max_missing_share, missing, len(values)))
    if categories is not None:
        unseen = [v for v in values if v is not None and not (isinstance(v, float) and v != v)
                  and str(v) not in categories]
        if unseen:
            shown = ", ".join(sorted(categories)[:10]) + (", …" if len(categories) > 10 else "")
            found.append(Violation(name, "unseen_category", len(unseen), f"{name}.categories",
                                   f"feature {name!r} has an unseen category: {str(unseen[0])[:40]!r} is not one of "
                                   f"{shown} (rule {name}.categories)"))
    return found


def _missing(name: str, share: float, count: int, rows: int) -> Violation:
    allowance = "none may miss it" if share == 0 else f"at most {share:.0%} may"
    return Violation(name, "missing", count, f"{name}.missing",
                     f"feature {name!r} is missing in {count} of {rows} rows; {allowance} (rule {name}.missing)")


def _num(value: float) -> str:
    return f"{value:.6g}"


def check(contract: DataContract, parsed) -> list[Violation]:
    """The value violations of request ``parsed`` (a ``ModelInput``) under ``contract``, at most
    one per feature and kind; ``[]`` when it keeps to it, or when it has no named columns."""
    columns = parsed.columns
    if columns is None:
        if not hasattr(parsed.data, "columns"):
            return []
        columns = tuple(str(c) for c in parsed.data.columns)
    checker = contract._compiled.get(columns)
    if checker is None:
        checker = contract._compiled[columns] = _Checker(contract, columns)
    return checker.check(parsed.data)


def schema_violation(error: RequestError, contract: DataContract | None) -> Violation | None:
    """The violation a parser refusal stands for (``wrong_type``, ``extra_field``, or ``missing``
    for a missing column or a null where the signature needs a value); ``None`` for a refusal
    that is no feature's (a malformed body), or a feature whose checks ``contract`` turned off."""
    kind = _SCHEMA_REASONS.get(error.reason or "")
    feature = error.details.get("column") or error.details.get("input")
    if kind is None or not feature:
        return None
    rule = contract.features.get(feature) if contract is not None else None
    if rule is not None and not rule.check:
        return None
    if kind == "wrong_type" and error.details.get("got") == "null":
        kind = "missing"
    return Violation(feature, kind, 1, f"{feature}.type" if kind == "wrong_type" else f"{feature}.{kind}",
                     error.message)


def header_value(violations: list[Violation]) -> str:
    """``alcohol:out_of_range,color:unseen_category``: each feature name percent-encoded
    (RFC 3986: all but letters, digits and ``-._~``), so a name with ``,`` or ``:`` stays readable."""
    return ",".join(f"{quote(v.feature, safe='')}:{v.kind}" for v in violations)


def refusal_message(violations: list[Violation]) -> str:
    """The 422 message of a request refused under ``on_violation = refuse``."""
    return "the request breaks this endpoint's data contract: " + "; ".join(v.message for v in violations)


__all__ = ["CONTRACT_REASON", "VIOLATIONS_HEADER", "Violation", "check", "header_value", "refusal_message",
           "schema_violation"]
