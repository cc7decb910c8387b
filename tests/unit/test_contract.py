"""Data contracts: derived from a signature and a reference sample, overridden by users, and
checked against parsed requests (loopml.registry.contract, loopml.serving.contract)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from loopml.errors import InvalidInput
from loopml.registry.contract import DataContract, apply_overrides, derive_contract, merge_overrides, parse_overrides
from loopml.serving.contract import check, header_value, refusal_message, schema_violation
from loopml.serving.errors import RequestError
from loopml.serving.protocols import parse_invocation, parse_v2_infer

WINE = pd.DataFrame({
    "alcohol": [9.0, 10.0, 11.0, 14.0],  # range 5: allowed [8.5, 14.5]
    "acidity": [0.1, np.nan, 0.3, 0.2],  # missing in 1 of 4 rows: optional in the signature
    "color": ["red", "white", "red", "white"],
    "batch": [1, 2, 3, 4],
})
NUMBERS = WINE[["alcohol", "batch"]]


def contract_of(frame: pd.DataFrame, tolerance: float = 0.1) -> tuple[DataContract, object]:
    signature = infer_signature(frame, np.zeros(len(frame)))
    return derive_contract(signature, frame, tolerance), signature


def invocation(signature, records: list[dict]):
    return parse_invocation(json.dumps({"dataframe_records": records}).encode(), None, signature, max_bytes=1 << 20)


def test_derived_from_signature_and_reference():
    contract, _ = contract_of(WINE)
    assert list(contract.features) == list(WINE.columns) and contract.reference_rows == 4
    alcohol, acidity, color, batch = contract.features.values()
    assert (alcohol.type, alcohol.required, alcohol.max_missing_share) == ("double", True, 0.0)
    assert (alcohol.observed_min, alcohol.observed_max) == (9.0, 14.0)
    assert alcohol.min == pytest.approx(8.5) and alcohol.max == pytest.approx(14.5)
    assert (acidity.required, acidity.max_missing_share) == (False, 0.25)
    assert color.type == "string" and color.categories == ["red", "white"] and color.min is None
    assert batch.type == "long" and batch.categories is None
    assert DataContract.model_validate_json(contract.model_dump_json()) == contract


def test_tolerance_many_categories_constants_and_tensors():
    many = pd.DataFrame({"id": [f"u{i}" for i in range(60)], "zero": [0.0] * 60})
    contract, _ = contract_of(many, tolerance=0.5)
    assert contract.features["id"].categories is None  # over 50 distinct values: any
    assert (contract.features["zero"].min, contract.features["zero"].max) == (-0.5, 0.5)
    tensor = infer_signature(np.zeros((3, 2)), np.zeros(3))
    assert derive_contract(tensor, pd.DataFrame(np.zeros((3, 2)))) is None
    with pytest.raises(InvalidInput, match="contract_tolerance"):
        derive_contract(infer_signature(NUMBERS), NUMBERS, -1)


def test_overrides_change_rules_and_can_be_dropped():
    contract, _ = contract_of(WINE)
    changed = apply_overrides(contract, ["alcohol.max=15", "alcohol.min=none", "color.categories=red, rose",
                                         "acidity.missing=0", "batch.check=off"])
    alcohol = changed.features["alcohol"]
    assert (alcohol.min, alcohol.max) == (None, 15.0)
    assert changed.features["color"].categories == ["red", "rose"]
    assert changed.features["acidity"].max_missing_share == 0 and not changed.features["batch"].check
    assert changed.overrides["alcohol"] == {"max": 15.0, "min": None}
    assert contract.features["alcohol"].max == pytest.approx(14.5)  # the logged contract is left as it is
    sdk = apply_overrides(contract, {"alcohol.max": 15, "color.categories": ["white"], "batch.check": False})
    assert sdk.features["color"].categories == ["white"] and not sdk.features["batch"].check
    merged = merge_overrides(changed.overrides, parse_overrides(contract, ["alcohol.max=logged"]))
    assert merged["alcohol"] == {"min": None} and "max" not in apply_overrides(contract, merged).overrides["alcohol"]


@pytest.mark.parametrize(("sets", "message"), [
    pytest.param(["sugar.max=3"], "unknown feature 'sugar'", id="unknown-feature"),
    pytest.param(["alcohol.median=3"], "unknown rule 'median'", id="unknown-rule"),
    pytest.param(["alcohol.max=lots"], r"alcohol\.max='lots': not a number", id="bad-number"),
    pytest.param(["alcohol.max"], "has no '='", id="no-value"),
    pytest.param(["alcohol=3"], "names no rule", id="no-rule"),
    pytest.param(["acidity.missing=2"], r"acidity\.missing='2'", id="share-over-1"),
    pytest.param(["color.max=3"], "min and max apply to numbers", id="range-of-a-string"),
    pytest.param(["alcohol.categories=a"], "categories apply to string features", id="categories-of-a-number"),
    pytest.param(["batch.check=maybe"], "write on or off", id="bad-switch"),
    pytest.param(["alcohol.min=20"], "min 20 is above max 14.5", id="min-over-max"),
])
def test_bad_overrides_name_the_feature_and_rule(sets, message):
    contract, _ = contract_of(WINE)
    with pytest.raises(InvalidInput, match=message):
        apply_overrides(contract, sets)


def test_numeric_rows_are_checked_as_one_array():
    contract, signature = contract_of(NUMBERS)
    fine = invocation(signature, [{"alcohol": 10.0, "batch": 2}])
    assert isinstance(fine.data, np.ndarray) and check(contract, fine) == []
    parsed = invocation(signature, [{"alcohol": 99.0, "batch": 2}, {"alcohol": 1.0, "batch": 2},
                                    {"alcohol": 99.0, "batch": 2}])
    [violation] = check(contract, parsed)
    assert (violation.feature, violation.kind, violation.rows, violation.rule) == ("alcohol", "out_of_range", 3,
                                                                                    "alcohol.max")
    assert violation.message == "feature 'alcohol' is out of range: 99 > max 14.5 (rule alcohol.max)"
    assert violation.record() == {"feature": "alcohol", "kind": "out_of_range", "rows": 3}
    low = check(contract, invocation(signature, [{"alcohol": 1.0, "batch": 2}]))
    assert low[0].message == "feature 'alcohol' is out of range: 1 < min 8.5 (rule alcohol.min)"
    off = apply_overrides(contract, ["alcohol.check=off"])
    assert check(off, parsed) == [] and check(contract, parsed)  # the cache is per contract


def test_mixed_rows_missing_and_unseen_categories():
    contract, signature = contract_of(WINE)
    row = {"alcohol": 10.0, "acidity": 0.2, "color": "red", "batch": 1}
    assert check(contract, invocation(signature, [row])) == []
    # acidity was missing in a quarter of the reference rows: one missing value per request passes
    assert check(contract, invocation(signature, [{**row, "acidity": None}])) == []
    strict = apply_overrides(contract, ["acidity.missing=0"])
    [missing] = check(strict, invocation(signature, [{**row, "acidity": None}]))
    assert (missing.feature, missing.kind, missing.rows) == ("acidity", "missing", 1)
    assert "rule acidity.missing" in missing.message
    [unseen] = check(contract, invocation(signature, [{**row, "color": "blue"}]))
    assert (unseen.feature, unseen.kind) == ("color", "unseen_category")
    assert unseen.message.startswith("feature 'color' has an unseen category: 'blue'")
    both = check(contract, invocation(signature, [{**row, "color": "blue", "alcohol": 99.0}]))
    assert header_value(both) == "alcohol:out_of_range,color:unseen_category"
    assert refusal_message(both).startswith("the request breaks this endpoint's data contract: feature 'alcohol'")


def test_v2_requests_are_checked_too():
    contract, signature = contract_of(WINE)
    body = {"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [99.0]},
                       {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]},
                       {"name": "batch", "shape": [1], "datatype": "INT64", "data": [1]}]}
    parsed = parse_v2_infer(json.dumps(body).encode(), None, signature, max_bytes=1 << 20)
    kinds = {(v.feature, v.kind) for v in check(apply_overrides(contract, ["acidity.missing=0"]), parsed)}
    assert kinds == {("alcohol", "out_of_range"), ("acidity", "missing")}


@pytest.mark.parametrize(("record", "expected"), [
    pytest.param({"alcohol": "strong"}, ("alcohol", "wrong_type"), id="wrong-type"),
    pytest.param({"sugar": 1.0}, ("sugar", "extra_field"), id="extra-field"),
    pytest.param({"alcohol": None}, ("alcohol", "missing"), id="null-in-required-column"),
    pytest.param({"alcohol": "drop"}, ("alcohol", "missing"), id="missing-column"),
])
def test_schema_refusals_are_violations(record, expected):
    contract, signature = contract_of(WINE)
    row = {"alcohol": 10.0, "acidity": 0.2, "color": "red", "batch": 1}
    row = {k: v for k, v in {**row, **record}.items() if v != "drop"}
    with pytest.raises(RequestError) as refused:
        invocation(signature, [row])
    violation = schema_violation(refused.value, contract)
    assert (violation.feature, violation.kind) == expected and violation.message == refused.value.message
    assert schema_violation(refused.value, None) is not None  # counted without a contract too
    off = apply_overrides(contract, [f"{expected[0]}.check=off"]) if expected[0] in contract.features else None
    if off is not None:
        assert schema_violation(refused.value, off) is None


def test_malformed_bodies_are_no_feature_s_violation():
    _, signature = contract_of(WINE)
    with pytest.raises(RequestError) as refused:
        parse_invocation(b"{", None, signature, max_bytes=1 << 20)
    assert schema_violation(refused.value, None) is None


def test_feature_names_are_percent_encoded_in_the_header():
    frame = pd.DataFrame({"sepal length (cm)": [1.0, 2.0], "a,b:c": [1.0, 2.0]})
    contract, signature = contract_of(frame)
    parsed = invocation(signature, [{"sepal length (cm)": 50.0, "a,b:c": 50.0}])
    assert header_value(check(contract, parsed)) == "sepal%20length%20%28cm%29:out_of_range,a%2Cb%3Ac:out_of_range"


def test_the_cli_table_marks_overridden_rules():
    import click

    from loopml.cli.models import _version_ref, contract_rows
    from loopml.registry.models import ContractView

    contract, _ = contract_of(WINE)
    changed = apply_overrides(contract, ["alcohol.max=15", "batch.check=off"])
    rows = {row[0]: row for row in contract_rows(ContractView(model="wine", version=1, contract=changed,
                                                              overrides=changed.overrides))}
    assert rows["alcohol"][1:] == ("double", "yes", "0.00%", "8.5", "15*", "-", "on")
    assert rows["color"][6] == "red,white" and rows["batch"][7] == "off*" and rows["acidity"][2] == "no"
    assert _version_ref("wine/3") == ("wine", 3)
    with pytest.raises(click.BadParameter, match="NAME/VERSION"):
        _version_ref("wine")
