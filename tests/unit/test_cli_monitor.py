"""``loopml monitor`` / ``loopml feedback`` and the Client's monitor methods against an in-process fake REST API."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loopml import client as client_module
from loopml.cli.monitor import sparkline
from loopml.client import Client
from loopml.errors import InvalidInput

pytestmark = pytest.mark.usefixtures("no_ambient_config")
SINCE, UNTIL = "2025-01-01T09:00:00Z", "2025-01-01T10:00:00Z"


def drift(feature: str, drifted: bool = False, test: str = "ks") -> dict[str, Any]:
    return {"feature": feature, "kind": "numeric", "test": test, "statistic": 0.91 if drifted else 0.08,
            "p_value": 1e-30 if drifted else 0.43, "psi": 4.2 if drifted else 0.02, "drifted": drifted,
            "n_reference": 150, "n_live": 200}


def report_json(project: str = "demo", name: str = "iris", window: str = "1h", **fields: Any) -> dict[str, Any]:
    return {
        "project": project, "endpoint": name, "version": 2, "window": window, "since": SINCE, "until": UNTIL,
        "requests": 412, "rate_per_s": 412 / 3600, "errors": 2, "refused": 3, "error_rate": 2 / 412,
        "latency_ms": {"p50": 3.21, "p95": 8.0, "p99": 12.5, "mean": 4.0, "max": 20.0},
        "drift": [drift("sepal length (cm)"), drift("petal width (cm)", drifted=True)],
        "drifted_features": ["petal width (cm)"], "prediction_drift": drift("prediction", test="chi2"),
        "quality": {"task": "classification", "n": 100, "accuracy": 0.96, "f1": 0.955}, "labelled": 100,
        "capture_dropped": 0, "alerts": [],
        "trend": {"starts": [SINCE] * 12, "requests": [0, 0, 10, 20, 40, 80, 80, 60, 40, 40, 22, 20],
                  "latency_p50_ms": [None, None, 3, 3, 3, 4, 4, 3, 3, 3, 3, 3],
                  "error_rate": [None, None, 0, 0, 0, 0.025, 0, 0, 0, 0, 0, 0]},
        "notes": [], **fields,
    }


@dataclass
class FakeMonitor:
    """The monitor routes over projects ``demo`` and ``other``; request ids ``r0``…``r9`` exist, labelled or not."""

    labels: dict[str, Any] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    report: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        if route == "GET /projects":
            return httpx.Response(200, json=[{"name": "demo", "members": [], "max_concurrent_jobs": None,
                                              "created_at": SINCE}])
        match = re.fullmatch(r"(GET|POST) /projects/([^/]+)/endpoints/([^/]+)/(monitor|feedback)", route)
        if not match or match[3] != "iris":
            return httpx.Response(404, json={"message": "endpoint does not exist", "reason": "not_found"})
        if match[4] == "monitor":
            window = request.url.params["window"]
            if window == "2w":
                return httpx.Response(422, json={"message": "invalid window '2w': use a number and a unit",
                                                 "reason": "invalid", "field": "window"})
            return httpx.Response(200, json=self.report or report_json(match[2], match[3], window))
        result = {"accepted": 0, "updated": 0, "unchanged": 0, "unknown": []}
        for item in json.loads(request.content):
            request_id, label = item["request_id"], item["label"]
            if not re.fullmatch(r"r\d", request_id):
                result["unknown"].append(request_id)
                continue
            kind = "accepted" if request_id not in self.labels else (
                "unchanged" if self.labels[request_id] == label else "updated")
            result[kind] += 1
            self.labels[request_id] = label
        return httpx.Response(200, json=result)

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


@pytest.fixture
def fake() -> FakeMonitor:
    return FakeMonitor()


@pytest.fixture
def client(fake) -> Client:
    return Client("http://fake", "tok", transport=httpx.MockTransport(fake))


# -- monitor ----------------------------------------------------------------------------------

def test_monitor_prints_traffic_latency_drift_and_quality_with_trends(run, fake):
    result = run("monitor", "iris", "--window", "24h")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert fake.paths[-1] == "GET /api/v1/projects/demo/endpoints/iris/monitor?window=24h"
    assert re.search(r"^endpoint: +demo/iris v2$", out, re.M)
    assert re.search(r"^requests +412 +▁▁▂▃▅██▆▅▅▃▃$", out, re.M)
    assert re.search(r"^rate +0\.114/s$", out, re.M)
    assert re.search(r"^errors \(5xx\) +2$", out, re.M) and re.search(r"^refused \(4xx\) +3$", out, re.M)
    assert re.search(r"^error rate +0\.5% +  ▁▁▁█▁▁▁▁▁▁$", out, re.M)  # no answer yet: a gap, not a bar
    assert re.search(r"^p50 +3\.2 +  ▆▆▆██▆▆▆▆▆$", out, re.M) and re.search(r"^p99 +12\.5$", out, re.M)
    assert re.search(r"^sepal length \(cm\) +ks +0\.080 +0\.43 +0\.020 +200$", out, re.M)
    assert re.search(r"^petal width \(cm\) +ks +0\.910 +1e-30 +4\.200 +200 +DRIFT$", out, re.M)
    assert re.search(r"^\(predictions\) +chi2 ", out, re.M)
    assert re.search(r"^accuracy +0\.960$", out, re.M) and re.search(r"^labelled requests +100$", out, re.M)
    assert re.search(r"^drifted: +petal width \(cm\)$", out, re.M)
    assert "12 buckets of 5m" in out and "no labels yet" not in out


ESTIMATED = {"metric": "accuracy", "value": 0.62, "low": 0.58, "high": 0.66, "n": 400, "f1": 0.6, "f1_class": 1,
             "reference": {"accuracy": 0.81, "f1": 0.8}, "source": "test", "labelled": 400, "realized": 0.6,
             "estimated_on_labelled": 0.62, "error": 0.02}
DATA_QUALITY = {"requests": 412, "affected": 12, "share": 12 / 412, "violations": [
    {"feature": "alcohol", "kind": "out_of_range", "requests": 10, "rows": 10, "share": 10 / 412},
    {"feature": "color", "kind": "unseen_category", "requests": 2, "rows": 3, "share": 2 / 412}]}
TREND_ESTIMATES = {"estimated": [None] * 10 + [0.9, 0.62], "estimated_low": [None] * 10 + [0.85, 0.58],
                   "estimated_high": [None] * 10 + [0.95, 0.66], "realized": [None] * 11 + [0.6]}


def test_monitor_prints_the_estimate_beside_the_realized_metric_and_the_contract_table(run, fake):
    report = report_json(estimated=ESTIMATED, data_quality=DATA_QUALITY)
    report["trend"] |= TREND_ESTIMATES
    fake.report = report
    out = run("monitor", "iris").stdout
    assert re.search(r"^estimated accuracy +0\.620 +█▆$", out, re.M)  # the sparkline: 0.9 then 0.62
    assert re.search(r"^95% band +0\.580 to 0\.660$", out, re.M)
    assert re.search(r"^held-out accuracy +0\.810 +\(test\)$", out, re.M)
    assert re.search(r"^estimated F1 \(class 1\) +0\.600$", out, re.M)
    assert re.search(r"^realized accuracy +0\.600", out, re.M)
    assert re.search(r"^estimate error +\+0\.020 +on 400 labelled rows$", out, re.M)
    assert re.search(r"^alcohol +out_of_range +10 +10 +2\.4%$", out, re.M)
    assert "12 of 412 requests (2.9%) broke the data contract" in out


def test_monitor_of_project_slash_name_asks_that_project(run, fake):
    result = run("monitor", "other/iris", "--json")
    assert result.exit_code == 0, result.output
    assert fake.paths == ["GET /api/v1/projects/other/endpoints/iris/monitor?window=1h"]
    assert json.loads(result.stdout)["project"] == "other"


@pytest.mark.parametrize("args, says", [
    (["other/iris", "-P", "demo"], "-P says 'demo'"),
    (["/iris"], "NAME or PROJECT/NAME"),
    (["a/b/c"], "NAME or PROJECT/NAME"),
], ids=["project-twice", "no-project", "two-slashes"])
def test_monitor_refuses_an_ambiguous_endpoint_reference(run, fake, args, says):
    result = run("monitor", *args)
    assert result.exit_code == 2 and says in result.stderr and fake.requests == []


def test_monitor_without_labels_or_reference_says_what_is_missing(run, fake):
    fake.report = report_json(drift=[], drifted_features=[], prediction_drift=None, quality=None, labelled=0,
                              capture_dropped=5, notes=["no drift: v2 has no reference sample"])
    result = run("monitor", "iris")
    assert result.exit_code == 0, result.output
    assert "DRIFT" not in result.stdout and "note: no drift: v2 has no reference sample" in result.stdout
    assert re.search(r"^capture dropped: +5$", result.stdout, re.M)
    assert "`loopml feedback iris labels.csv -P demo`" in result.stdout


def test_a_bad_window_is_one_error_line(run):
    result = run("monitor", "iris", "--window", "2w")
    assert result.exit_code == 1 and result.stderr == "error: invalid window '2w': use a number and a unit\n"


def test_client_monitor_parses_the_report(client):
    report = client.monitor("demo", "iris", "15m")
    assert report.window == "15m" and report.drifted_features == ["petal width (cm)"]
    assert report.trend.latency_p50_ms[0] is None and report.quality["n"] == 100


def test_sparkline_scales_from_zero_and_leaves_gaps():
    assert sparkline([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert sparkline([None, 0, 0]) == " ▁▁" and sparkline([None]) == "" and sparkline([5, 5]) == "██"


# -- feedback -------------------------------------------------------------------------------

def write(tmp_path, text: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_feedback_sends_numbers_as_numbers_and_warns_about_unknown_ids(run, fake, tmp_path):
    labels = write(tmp_path, "request_id,label\nr0,1\nr1,2.5\nr2,setosa\nr3, 0 \nmissing-1,1\nmissing-2,1\n")
    result = run("feedback", "iris", labels)
    assert result.exit_code == 0, result.output
    assert fake.bodies() == [[{"request_id": "r0", "label": 1}, {"request_id": "r1", "label": 2.5},
                              {"request_id": "r2", "label": "setosa"}, {"request_id": "r3", "label": 0},
                              {"request_id": "missing-1", "label": 1}, {"request_id": "missing-2", "label": 1}]]
    assert result.stdout == "iris: 4 accepted, 0 updated, 0 unchanged, 2 unknown\n"
    assert result.stderr == ("warning: 2 request ids have no captured request of demo/iris: "
                             "missing-1, missing-2\n")

    again = run("feedback", "demo/iris", write(tmp_path, "label,request_id\n1,r0\n3,r1\n"), "--json")
    assert again.exit_code == 0 and again.stderr == ""
    assert json.loads(again.stdout) == {"accepted": 0, "updated": 1, "unchanged": 1, "unknown": []}


@pytest.mark.parametrize("text, says", [
    (None, "no such file"),
    ("", "the header must be request_id,label (found nothing)"),
    ("id,label\nr0,1\n", "the header must be request_id,label (found id,label)"),
    ("request_id,label,extra\nr0,1,2\n", "found request_id,label,extra"),
    ("request_id,label\n", "no labels after the header"),
    ("request_id,label\nr0,1\nr1,\n", "line 3: empty label"),
    ("request_id,label\nr0\n", "line 2: expected 2 cells"),
    ("request_id,label\nr0,1,2\n", "line 2: expected 2 cells"),
    ("request_id,label\n,1\n", "line 2: empty request_id"),
], ids=["missing", "empty", "wrong-header", "extra-column", "no-rows", "empty-label", "short-row", "long-row",
        "empty-id"])
def test_a_bad_labels_file_is_one_error_line_and_nothing_is_sent(run, fake, tmp_path, text, says):
    path = str(tmp_path / "absent.csv") if text is None else write(tmp_path, text)
    result = run("feedback", "iris", path)
    assert result.exit_code == 1, result.output
    assert says in result.stderr and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert fake.requests == []


def test_a_binary_labels_file_is_refused(run, fake, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"request_id,label\n\xff\xfe\x00,1\n")
    result = run("feedback", "iris", str(path))
    assert result.exit_code == 1 and "not a UTF-8 text file" in result.stderr and fake.requests == []


def test_client_feedback_splits_large_sets_and_adds_up_the_answers(client, fake, monkeypatch):
    monkeypatch.setattr(client_module, "MAX_FEEDBACK", 4)
    items = [{"request_id": f"r{i}", "label": i % 3} for i in range(10)] + [{"request_id": "x", "label": 1}]
    result = client.feedback("demo", "iris", items)
    assert [len(body) for body in fake.bodies()] == [4, 4, 3]
    assert (result.accepted, result.unknown) == (10, ["x"])


@pytest.mark.parametrize("items, says", [
    ([{"request_id": "r0", "label": 1}, {"label": 1}], "items[1].request_id"),
    ([{"request_id": "", "label": 1}], "items[0].request_id"),
    ({"request_id": "r0", "label": 1}, "a list of"),
], ids=["no-id", "empty-id", "not-a-list"])
def test_client_feedback_checks_items_before_sending(client, fake, items, says):
    with pytest.raises(InvalidInput) as caught:
        client.feedback("demo", "iris", items)
    assert says in caught.value.message and fake.requests == []
