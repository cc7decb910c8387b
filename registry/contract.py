"""A model version's data contract: what each input feature may be, and the users' overrides.

Derived once, when ``loopml.log_model`` registers the version, from its MLflow signature
(each column's type and whether it is required) and its reference sample (the share of rows
missing each feature, the observed range of a number widened by a tolerance, the category
set of a low-cardinality string column), and stored as a JSON artifact beside the sample.
Users tighten or loosen it with ``feature.rule=value`` overrides (:func:`apply_overrides`);
the replica checks requests against the result (:mod:`loopml.serving.contract`).

It lives in the registry slice because the notebook SDK writes it and the registry keeps
it; pydantic and numpy only (pandas where a reference frame is profiled), so a replica
imports it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from loopml.errors import InvalidInput

DEFAULT_TOLERANCE = 0.1
"""Share of a feature's observed range its bounds are widened by on each side (``contract_tolerance``)."""
MAX_CATEGORIES = 50
"""A string feature with more distinct values in the reference sample gets no category set."""
NUMERIC = frozenset({"double", "float", "long", "integer"})
CATEGORICAL = frozenset({"string"})
RULES = ("min", "max", "categories", "missing", "check")
LOGGED = "logged"
"""The override value that drops an override: the rule goes back to the logged one."""


class FeatureContract(BaseModel):
    """What one input feature may be."""

    type: str = Field(description="The MLflow signature's type: double, float, long, integer, boolean, string…")
    required: bool = Field(True, description="The signature requires the column (a request without it is refused).")
    check: bool = Field(True, description="Whether values are checked at all (feature.check=off turns it off).")
    max_missing_share: float = Field(
        0.0, ge=0, le=1, description="Share of the reference rows missing it: a request may miss it in at most "
                                     "ceil(share × rows) rows, so 0 makes any missing value a violation.")
    min: float | None = Field(None, description="Smallest value allowed (the observed minimum less the tolerance).")
    max: float | None = Field(None, description="Largest value allowed (the observed maximum plus the tolerance).")
    categories: list[str] | None = Field(
        None, description=f"The values a string feature may take (its reference values, when at most "
                          f"{MAX_CATEGORIES}); None: any.")
    observed_min: float | None = Field(None, description="Smallest value in the reference sample.")
    observed_max: float | None = Field(None, description="Largest value in the reference sample.")


class DataContract(BaseModel):
    """Every input feature's contract, in the signature's column order."""

    format: Literal[1] = 1
    features: dict[str, FeatureContract]
    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0, description="How far the bounds were widened, as a share "
                                                                  "of each feature's observed range.")
    reference_rows: int = Field(0, ge=0, description="Rows of the reference sample it was derived from.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The users' overrides applied to the logged contract: "
                                          "{feature: {rule: value}}.")
    _compiled: dict = PrivateAttr(default_factory=dict)  # loopml.serving.contract's checkers, per column order


def derive_contract(signature, reference_frame, tolerance: float = DEFAULT_TOLERANCE) -> DataContract | None:
    """The contract of a version whose MLflow ``signature`` has named input columns, profiled
    on ``reference_frame`` (a DataFrame holding those columns; others are ignored). ``None``
    for a signature without named columns (a tensor): there is no feature to name."""
    inputs = getattr(signature, "inputs", None)
    if inputs is None or inputs.is_tensor_spec() or any(spec.name is None for spec in inputs.inputs):
        return None
    if tolerance < 0 or not math.isfinite(tolerance):
        raise InvalidInput(f"contract_tolerance {tolerance!r} must be a share ≥ 0, such as 0.1",
                           field="contract_tolerance")
    features = {}
    for spec in inputs.inputs:
        kind = getattr(spec.type, "name", "any")
        column = reference_frame[spec.name] if spec.name in reference_frame.columns else None
        features[spec.name] = _profile(kind, spec.required, column, tolerance)
    return DataContract(features=features, tolerance=tolerance, reference_rows=len(reference_frame))


def _profile(kind: str, required: bool, column, tolerance: float) -> FeatureContract:
    import numpy as np
    import pandas as pd

    if column is None or len(column) == 0:
        return FeatureContract(type=kind, required=required)
    missing = column.isna()
    share = round(float(missing.mean()), 6)
    present = column[~missing]
    rule = FeatureContract(type=kind, required=required, max_missing_share=share)
    if kind in NUMERIC and len(present):
        values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            low, high = float(values.min()), float(values.max())
            span = (high - low) or abs(high) or 1.0  # a constant feature still gets some room
            rule.observed_min, rule.observed_max = low, high
            rule.min, rule.max = low - tolerance * span, high + tolerance * span
    elif kind in CATEGORICAL:
        distinct = sorted({str(v) for v in present})
        rule.categories = distinct if len(distinct) <= MAX_CATEGORIES else None
    return rule


def parse_overrides(contract: DataContract, sets: Iterable[str] | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{feature: {rule: value}}`` from ``feature.rule=value`` texts (the CLI's and REST's form) or
    a mapping (the SDK's ``{"feature.rule": value}``, values typed or text). Rules: ``min``, ``max``
    (a number, or ``none`` for no bound), ``categories`` (``a,b,c`` or a list, or ``none``: any),
    ``missing`` (a share 0–1), ``check`` (``on``/``off``); the value ``logged`` drops an override.
    :class:`InvalidInput` naming the feature and rule for an unknown feature or rule or a bad value."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(sets, Mapping):
        pairs = [(str(key), value) for key, value in sets.items()]
    else:
        for text in sets:
            key, equals, value = str(text).partition("=")
            if not equals:
                raise InvalidInput(f"contract override {text!r} has no '=': write feature.rule=value, such as "
                                   "alcohol.max=15", field="set")
            pairs.append((key.strip(), value.strip()))
    parsed: dict[str, dict[str, Any]] = {}
    for key, value in pairs:
        feature, dot, rule = key.rpartition(".")
        if not dot or not feature:
            raise InvalidInput(f"contract override {key!r} names no rule: write feature.rule=value with a rule of "
                               f"{', '.join(RULES)}", field="set")
        if feature not in contract.features:
            known = ", ".join(repr(f) for f in list(contract.features)[:12])
            raise InvalidInput(f"contract override {key!r}: unknown feature {feature!r}; this version's features are "
                               f"{known}", field="set", feature=feature)
        if rule not in RULES:
            raise InvalidInput(f"contract override {key!r}: unknown rule {rule!r}; use one of {', '.join(RULES)}",
                               field="set", feature=feature)
        parsed.setdefault(feature, {})[rule] = _rule_value(contract.features[feature], feature, rule, value)
    return parsed


def _rule_value(current: FeatureContract, feature: str, rule: str, value: Any) -> Any:
    where = f"{feature}.{rule}"
    text = value.strip().lower() if isinstance(value, str) else None
    if text == LOGGED:
        return LOGGED
    if rule in ("min", "max"):
        if current.type not in NUMERIC:
            raise InvalidInput(f"contract override {where}: {feature!r} is a {current.type} feature; min and max "
                               "apply to numbers", field="set", feature=feature)
        if value is None or text == "none":
            return None
        number = _number(value)
        if number is None:
            raise InvalidInput(f"contract override {where}={value!r}: not a number; write a number such as 15 or "
                               "none for no bound", field="set", feature=feature)
        return number
    if rule == "missing":
        share = _number(value)
        if share is None or not 0 <= share <= 1:
            raise InvalidInput(f"contract override {where}={value!r}: write the share of a request's rows that may "
                               "miss it, from 0 (none) to 1", field="set", feature=feature)
        return share
    if rule == "check":
        if value in (True, False):
            return bool(value)
        if text in ("on", "off", "true", "false"):
            return text in ("on", "true")
        raise InvalidInput(f"contract override {where}={value!r}: write on or off", field="set", feature=feature)
    # categories
    if current.type not in CATEGORICAL:
        raise InvalidInput(f"contract override {where}: {feature!r} is a {current.type} feature; categories apply "
                           "to string features", field="set", feature=feature)
    if value is None or text == "none":
        return None
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        raise InvalidInput(f"contract override {where}: write the categories as a,b,c", field="set", feature=feature)
    categories = sorted({str(item).strip() for item in items if str(item).strip()})
    if not categories:
        raise InvalidInput(f"contract override {where}: name at least one category, or none for any",
                           field="set", feature=feature)
    return categories


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def merge_overrides(stored: Mapping[str, Mapping[str, Any]], parsed: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """``stored`` overrides with ``parsed`` on top; a ``logged`` value drops that override."""
    merged = {feature: dict(rules) for feature, rules in stored.items()}
    for feature, rules in parsed.items():
        for rule, value in rules.items():
            if value == LOGGED:
                merged.get(feature, {}).pop(rule, None)
            else:
                merged.setdefault(feature, {})[rule] = value
    return {feature: rules for feature, rules in merged.items() if rules}


def apply_overrides(contract: DataContract, sets: Iterable[str] | Mapping[str, Any]) -> DataContract:
    """``contract`` with the overrides ``sets`` (as :func:`parse_overrides` reads them; an already
    parsed ``{feature: {rule: value}}`` too) applied; the contract itself is left as it is.
    :class:`InvalidInput` when a bound would fall below the other."""
    if isinstance(sets, Mapping) and all(isinstance(v, Mapping) for v in sets.values()):
        parsed = {feature: dict(rules) for feature, rules in sets.items()}
        parse_overrides(contract, {f"{f}.{r}": v for f, rules in parsed.items() for r, v in rules.items()})
    else:
        parsed = parse_overrides(contract, sets)
    overrides = merge_overrides(contract.overrides, parsed)
    features = {name: rule.model_copy() for name, rule in contract.features.items()}
    for feature, rules in parsed.items():
        rule = features[feature]
        for name, value in rules.items():
            if value == LOGGED:
                continue
            setattr(rule, "max_missing_share" if name == "missing" else name, value)
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            raise InvalidInput(f"contract override of {feature!r}: min {rule.min:g} is above max {rule.max:g}",
                               field="set", feature=feature)
    changed = contract.model_copy(update={"features": features, "overrides": overrides})
    changed._compiled = {}  # model_copy shares the private cache: the checkers were of the old rules
    return changed


__all__ = ["DEFAULT_TOLERANCE", "LOGGED", "MAX_CATEGORIES", "RULES", "DataContract", "FeatureContract",
           "apply_overrides", "derive_contract", "merge_overrides", "parse_overrides"]
