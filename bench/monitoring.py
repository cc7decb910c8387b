"""Benchmark: loopml's monitoring against a plain scipy baseline, Evidently and NannyML, and what
capture costs an endpoint.

Three parts, measured side by side in one run (each can be skipped):

1. **Drift report**: ``--rows`` reference and ``--rows`` live rows of 10 synthetic features
   (8 numeric of mixed shapes, integers among them, and 2 categorical; one numeric and one
   categorical shifted in the live rows). :func:`loopml.monitor.stats.feature_drift` against

   - a plain scipy baseline: ``ks_2samp`` per numeric column, ``chi2_contingency`` per
     categorical one, a column flagged when p < 0.01 (loopml's own p threshold);
   - Evidently's data-drift report (``Report([DataDriftPreset()])``), run as a subprocess in a
     virtualenv of its own, ``bench/.venvs/evidently`` (Evidently needs ``pandas<3``, the
     platform has pandas 3), reading the same frames from parquet files.

   Targets: loopml ≤ 2x the scipy baseline and under 1 s; ≥ 5x faster than Evidently, with the
   same features flagged (both sets are printed).

2. **Performance estimated without labels**, on ``--rows`` captured analysis rows with a
   covariate shift, from a held-out reference set of 20,000 labelled rows:

   - CBPE for a binary classifier (LogisticRegression on synthetic data):
     :func:`loopml.registry.estimator.fit_estimator` ``("cbpe", ...)`` (what ``log_model`` runs)
     then :func:`loopml.monitor.estimate.estimate` (what the report runs) vs
     ``nannyml.CBPE(..., problem_type="classification_binary", metrics=["accuracy"],
     chunk_number=1)`` ``.fit(reference).estimate(analysis)``, NannyML in
     ``bench/.venvs/nannyml``, a subprocess reading the same rows from parquet. Targets: the
     two accuracy estimates within 0.02 of each other (the true accuracy of the analysis rows
     is printed too), loopml ≥ 5x faster.
   - DLE for a regressor (LinearRegression, noise that grows with one feature): loopml's
     ``("dle", ...)`` vs ``nannyml.DLE(metrics=["mae"], chunk_number=1)``. MAE estimates, the
     true MAE and timings are reported; there is no target for it.

   Only fit + estimate are timed on each side (not imports, file reads or venv creation);
   fit and estimate are reported apart and summed.

3. **Endpoint throughput with capture on vs off**: ``bench/serving.py``'s own machinery (its
   platform in a temp dir, the wine model, its load generator): the loopml ``/invocations``
   target with capture on, then the platform service restarted with ``capture_sample = 0``
   and the same target again. Targets: rps@8 capture on ≥ 0.9x off, p50 on ≤ off + 0.5 ms.

Timings are medians (the box is shared) over at least ``--repeat`` runs, the peers' over at
least ``--peer-repeat``, and at least 1 s of runs in all, so a 20 ms step is run ~50 times;
endpoint figures are medians of ``--rounds`` rounds. Prints the tables and
the ratios, writes ``bench/results/monitoring.md`` (``monitoring-partial.md`` when a part is
skipped).

Usage: ``python bench/monitoring.py [--rows 100000] [--repeat 5] [--peer-repeat 5] [--rounds 3]
[--requests 500] [--warmup 50] [--seconds 10] [--skip-endpoint] [--skip-peers] [--keep]``.
The endpoint part starts a platform of its own; run it under the services lock
(``flock /tmp/loopml-services.lock python bench/monitoring.py``) when integration tests share the box.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from _platform import platform_pids, stop_platform
from scipy.special import expit
from scipy.stats import chi2_contingency, ks_2samp

import serving as serving_bench  # bench/serving.py: bench/ is on sys.path
from loopml.monitor.estimate import estimate
from loopml.monitor.stats import DEFAULT_P_THRESHOLD, feature_drift
from loopml.registry.estimator import fit_estimator

BENCH = Path(__file__).parent
RESULTS = BENCH / "results" / "monitoring.md"
EVIDENTLY_VENV = BENCH / ".venvs" / "evidently"
NANNYML_VENV = BENCH / ".venvs" / "nannyml"
# Evidently 0.7 does not import with pandas 3. NannyML 0.13.1 imports statsmodels (its plots)
# without declaring it, and predates pandas 3.
EVIDENTLY_PACKAGES = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]
NANNYML_PACKAGES = ["nannyml>=0.13,<0.14", "statsmodels", "pandas<3", "pyarrow"]
SHIFTED = ("normal_shifted", "colour")  # the two columns whose live distribution moves
REFERENCE_ROWS = 20_000  # held-out labelled rows the estimators are fit on
TRAIN_ROWS = 20_000
PEER_TIMEOUT_S = 1800
MIN_TIMED_S = 1.0  # each timing runs at least --repeat times and at least this long in all

EVIDENTLY_PEER = '''\
"""Evidently's data-drift preset over the bench's frames; prints one JSON line."""
import json
import statistics
import sys
import time
import warnings
from importlib.metadata import version

warnings.filterwarnings("ignore")
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

folder, repeat, min_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
reference = pd.read_parquet(f"{folder}/reference.parquet")
live = pd.read_parquet(f"{folder}/live.parquet")
categorical = [c for c in reference.columns if not pd.api.types.is_numeric_dtype(reference[c])]
definition = DataDefinition(numerical_columns=[c for c in reference.columns if c not in categorical],
                            categorical_columns=categorical)
times = []
while len(times) < repeat or sum(times) < min_seconds:
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(live, data_definition=definition),
                                               Dataset.from_pandas(reference, data_definition=definition))
    times.append(time.perf_counter() - start)
flagged, methods = [], {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if not config.get("type", "").endswith("ValueDrift"):
        continue
    method, threshold, score = config["method"], config["threshold"], metric["value"]
    methods[config["column"]] = method
    # p-value tests drift below the threshold, distances (Wasserstein, Jensen-Shannon, PSI) at or above it
    if (score < threshold) if "p_value" in method else (score >= threshold):
        flagged.append(config["column"])
print(json.dumps({"seconds": statistics.median(times), "times": times, "runs": len(times), "flagged": flagged,
                  "methods": methods, "version": version("evidently")}))
'''

NANNYML_PEER = '''\
"""NannyML's CBPE or DLE on the bench's reference and analysis rows; prints one JSON line."""
import json
import statistics
import sys
import time
import warnings
from importlib.metadata import version

warnings.filterwarnings("ignore")
import nannyml
import pandas as pd

folder, method, repeat, min_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
reference = pd.read_parquet(f"{folder}/{method}-reference.parquet")
analysis = pd.read_parquet(f"{folder}/{method}-analysis.parquet")
metric = "accuracy" if method == "cbpe" else "mae"


def estimator():
    if method == "cbpe":
        return nannyml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                            problem_type="classification_binary", metrics=["accuracy"], chunk_number=1)
    features = [c for c in reference.columns if c not in ("y_pred", "y_true")]
    return nannyml.DLE(feature_column_names=features, y_pred="y_pred", y_true="y_true", metrics=["mae"],
                       chunk_number=1)


fits, estimates, totals = [], [], []
while len(totals) < repeat or sum(totals) < min_seconds:
    start = time.perf_counter()
    fitted = estimator().fit(reference)
    middle = time.perf_counter()
    result = fitted.estimate(analysis)
    end = time.perf_counter()
    fits.append(middle - start)
    estimates.append(end - middle)
    totals.append(end - start)
frame = result.filter(period="analysis").to_df()
print(json.dumps({"fit": statistics.median(fits), "estimate": statistics.median(estimates),
                  "total": statistics.median(totals), "first": totals[0], "runs": len(totals),
                  "value": float(frame[(metric, "value")].iloc[0]), "chunks": len(frame),
                  "version": version("nannyml")}))
'''


# -- peers in virtualenvs of their own -------------------------------------------------------


class PeerFailed(RuntimeError):
    """A peer's virtualenv or subprocess failed; the message says how."""


def peer_venv(folder: Path, packages: list[str], module: str) -> Path:
    """The python of ``folder``, a virtualenv with ``packages``: created on the first run, reused
    while ``module`` imports there, installed again when it does not."""
    python = folder / "bin" / "python"
    if python.exists():
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        if probe.returncode == 0:
            return python
        print(f"{module} does not import in {folder}; installing {' '.join(packages)} again:\n"
              f"{probe.stderr[-1000:]}")
    else:
        print(f"creating {folder} ({', '.join(packages)}), once")
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True)
    if installed.returncode != 0:
        raise PeerFailed(f"pip install {' '.join(packages)} failed in {folder}:\n{installed.stderr[-2000:]}")
    return python


def run_peer(python: Path, script: Path, *argv: str) -> dict[str, Any]:
    """Run ``script`` with the peer's python; its last stdout line, as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    env["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML's usage analytics
    done = subprocess.run([str(python), str(script), *argv], capture_output=True, text=True, env=env,
                          timeout=PEER_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise PeerFailed(f"{script.name} {' '.join(argv)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


# -- timing ---------------------------------------------------------------------------------


def enough(times: list[float], repeat: int) -> bool:
    """Runs enough: at least ``repeat`` of them and ``MIN_TIMED_S`` seconds in all (a 20 ms step
    gets ~50 runs, a 3 s one ``repeat``)."""
    return len(times) >= repeat and sum(times) >= MIN_TIMED_S


def median_seconds(call: Callable[[], Any], repeat: int) -> tuple[float, Any, int]:
    """(median wall seconds of the calls, the last call's result, how many calls); see :func:`enough`."""
    times, result = [], None
    while not enough(times, repeat):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result, len(times)


# -- 1. drift -------------------------------------------------------------------------------


def drift_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, live): ``rows`` rows each of 8 numeric and 2 categorical columns; in live,
    ``normal_shifted`` moves by half a standard deviation and ``colour`` changes its shares."""
    rng = np.random.default_rng(seed)

    def frame(shifted: bool) -> pd.DataFrame:
        n = rows
        bimodal = np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(1, 0.8, n))
        colours = [0.2, 0.3, 0.3, 0.2] if shifted else [0.4, 0.3, 0.2, 0.1]
        return pd.DataFrame({
            "normal": rng.normal(0, 1, n),
            "normal_shifted": rng.normal(0.5 if shifted else 0.0, 1, n),
            "lognormal": rng.lognormal(0, 0.5, n),
            "uniform": rng.uniform(-1, 1, n),
            "exponential": rng.exponential(2.0, n),
            "bimodal": bimodal,
            "count": rng.poisson(3, n).astype("int64"),
            "id_like": rng.integers(0, 1000, n).astype("int64"),
            "size": rng.choice(["S", "M", "L", "XL", "XXL"], n, p=[0.1, 0.3, 0.3, 0.2, 0.1]),
            "colour": rng.choice(["red", "green", "blue", "grey"], n, p=colours),
        })

    return frame(False), frame(True)


def scipy_drift(reference: pd.DataFrame, live: pd.DataFrame) -> list[str]:
    """The plain baseline: KS per numeric column, chi-squared of the counts per other column;
    the columns with p < loopml's p threshold."""
    flagged = []
    for column in reference.columns:
        if pd.api.types.is_numeric_dtype(reference[column]):
            p_value = ks_2samp(reference[column].to_numpy(), live[column].to_numpy()).pvalue
        else:
            counts = pd.concat([reference[column].value_counts(), live[column].value_counts()], axis=1)
            p_value = chi2_contingency(counts.fillna(0).to_numpy().T, correction=False).pvalue
        if p_value < DEFAULT_P_THRESHOLD:
            flagged.append(str(column))
    return flagged


@dataclass
class Measured:
    """One row of a table: what ran, its seconds (fit/estimate where it has them), what it found."""

    what: str
    seconds: float | None = None
    fit: float | None = None
    estimate: float | None = None
    flagged: list[str] | None = None
    value: float | None = None
    note: str = ""


def measure_drift(args: argparse.Namespace, work: Path) -> dict[str, Measured]:
    print(f"drift: {args.rows:,} reference and {args.rows:,} live rows x 10 features")
    reference, live = drift_frames(args.rows)
    reference.to_parquet(work / "reference.parquet")
    live.to_parquet(work / "live.parquet")
    # both sides read the same files: the frames the peer reads are the frames measured here
    reference, live = pd.read_parquet(work / "reference.parquet"), pd.read_parquet(work / "live.parquet")

    seconds, report, runs = median_seconds(lambda: feature_drift(reference, live), args.repeat)
    results = {"loopml": Measured("loopml feature_drift", seconds, flagged=[d.feature for d in report if d.drifted],
                                  note=f"{runs} runs")}
    seconds, flagged, runs = median_seconds(lambda: scipy_drift(reference, live), args.repeat)
    results["scipy"] = Measured("scipy baseline (ks_2samp / chi2_contingency)", seconds, flagged=flagged,
                                note=f"{runs} runs")
    if not args.skip_peers:
        script = work / "evidently_peer.py"
        script.write_text(EVIDENTLY_PEER)
        try:
            python = peer_venv(EVIDENTLY_VENV, EVIDENTLY_PACKAGES, "evidently")
            found = run_peer(python, script, str(work), str(args.peer_repeat), str(MIN_TIMED_S))
            methods = sorted(set(found["methods"].values()))
            results["evidently"] = Measured(f"Evidently {found['version']} DataDriftPreset", found["seconds"],
                                            flagged=found["flagged"],
                                            note=f"{found['runs']} runs, the first {found['times'][0]:.3f} s; "
                                                 f"methods: {', '.join(methods)}")
        except PeerFailed as error:
            print(f"!!! Evidently failed: {error}")
            results["evidently"] = Measured("Evidently DataDriftPreset", note=f"failed: {error}")
    for measured in results.values():
        print(f"  {measured.what:<46} {_s(measured.seconds):>8}  flagged {measured.flagged}")
    return results


# -- 2. estimation ---------------------------------------------------------------------------


@dataclass
class EstimationData:
    """Reference (labelled, held out) and analysis (captured, shifted) rows of one model."""

    reference: pd.DataFrame  # features, y_pred, y_true (+ y_pred_proba for a classifier)
    analysis: pd.DataFrame  # features, y_pred (+ y_pred_proba); no labels
    truth: float  # the true accuracy / MAE of the analysis rows
    reference_metric: float
    features: list[str] = field(default_factory=list)


def classifier_data(rows: int, seed: int = 1) -> EstimationData:
    """A well-specified logistic problem; the analysis rows sit closer to the decision boundary
    (informative features at half their spread, one shifted) and an ignored feature moves."""
    rng = np.random.default_rng(seed)
    weights = np.array([1.6, -1.2, 0.8, 0.0, 0.4])

    def sample(n: int, scale=1.0, offset=0.0):
        x = rng.normal(offset, scale, size=(n, weights.size))
        return x, (rng.random(n) < expit(x @ weights)).astype("int64")

    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(*sample(TRAIN_ROWS))
    x_ref, y_ref = sample(REFERENCE_ROWS)
    x_live, y_live = sample(rows, scale=np.array([0.5, 0.5, 0.5, 1.0, 1.0]), offset=np.array([0.3, 0, 0, 1.5, 0]))

    def frame(x, y=None) -> pd.DataFrame:
        proba = model.predict_proba(x)[:, 1]
        out = pd.DataFrame(x, columns=[f"x{i}" for i in range(weights.size)])
        out["y_pred_proba"], out["y_pred"] = proba, (proba >= 0.5).astype("int64")
        if y is not None:
            out["y_true"] = y
        return out

    reference, analysis = frame(x_ref, y_ref), frame(x_live)
    return EstimationData(reference, analysis, float((analysis["y_pred"].to_numpy() == y_live).mean()),
                          float((reference["y_pred"] == reference["y_true"]).mean()))


def regressor_data(rows: int, seed: int = 2) -> EstimationData:
    """A linear target whose noise grows with ``x3``; ``x3`` spreads twice as wide in the analysis rows."""
    rng = np.random.default_rng(seed)
    weights = np.array([2.0, -1.0, 0.5, 0.0, 0.0])
    features = [f"x{i}" for i in range(weights.size)]

    def sample(n: int, scale=1.0):
        x = rng.normal(0, scale, size=(n, weights.size))
        return x, x @ weights + rng.normal(0, 1, n) * (0.3 + np.abs(x[:, 3]))

    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(*sample(TRAIN_ROWS))
    x_ref, y_ref = sample(REFERENCE_ROWS)
    x_live, y_live = sample(rows, scale=np.array([1.0, 1.0, 1.0, 2.0, 1.0]))

    def frame(x, y=None) -> pd.DataFrame:
        out = pd.DataFrame(x, columns=features)
        out["y_pred"] = model.predict(x)
        if y is not None:
            out["y_true"] = y
        return out

    reference, analysis = frame(x_ref, y_ref), frame(x_live)
    return EstimationData(reference, analysis, float(np.abs(analysis["y_pred"].to_numpy() - y_live).mean()),
                          float((reference["y_pred"] - reference["y_true"]).abs().mean()), features)


def loopml_cbpe(data: EstimationData, repeat: int) -> Measured:
    ref_proba = _two_columns(data.reference["y_pred_proba"].to_numpy())
    live_proba = _two_columns(data.analysis["y_pred_proba"].to_numpy())
    y_true = data.reference["y_true"].to_numpy()
    return _loopml_estimate("loopml CBPE", repeat,
                            lambda: fit_estimator("cbpe", y_true=y_true, probabilities=ref_proba, classes=[0, 1]),
                            lambda estimator: estimate(estimator, probabilities=live_proba))


def loopml_dle(data: EstimationData, repeat: int) -> Measured:
    ref_features, live_features = data.reference[data.features], data.analysis[data.features]
    y_true, ref_pred = data.reference["y_true"].to_numpy(), data.reference["y_pred"].to_numpy()
    live_pred = data.analysis["y_pred"].to_numpy()
    return _loopml_estimate("loopml DLE", repeat,
                            lambda: fit_estimator("dle", y_true=y_true, predictions=ref_pred, features=ref_features),
                            lambda estimator: estimate(estimator, features=live_features, predictions=live_pred))


def _loopml_estimate(what: str, repeat: int, fit: Callable[[], Any], run: Callable[[Any], dict]) -> Measured:
    fits, runs, totals, found = [], [], [], None
    while not enough(totals, repeat):
        start = time.perf_counter()
        estimator = fit()
        middle = time.perf_counter()
        found = run(estimator)
        end = time.perf_counter()
        fits.append(middle - start)
        runs.append(end - middle)
        totals.append(end - start)
    return Measured(what, float(np.median(totals)), float(np.median(fits)), float(np.median(runs)),
                    value=found["value"], note=f"{len(totals)} runs; 95% band {found['low']:.3f}-{found['high']:.3f}")


def _two_columns(positive: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - positive, positive])


def nannyml_estimate(method: str, data: EstimationData, work: Path, repeat: int) -> Measured:
    what = f"NannyML {method.upper()}"
    data.reference.to_parquet(work / f"{method}-reference.parquet")
    data.analysis.to_parquet(work / f"{method}-analysis.parquet")
    script = work / "nannyml_peer.py"
    script.write_text(NANNYML_PEER)
    try:
        python = peer_venv(NANNYML_VENV, NANNYML_PACKAGES, "nannyml")
        found = run_peer(python, script, str(work), method, str(repeat), str(MIN_TIMED_S))
    except PeerFailed as error:
        print(f"!!! {what} failed: {error}")
        return Measured(what, note=f"failed: {error}")
    return Measured(f"NannyML {found['version']} {method.upper()}", found["total"], found["fit"], found["estimate"],
                    value=found["value"],
                    note=f"{found['runs']} runs, the first {found['first']:.3f} s; {found['chunks']} analysis chunk")


def measure_estimation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    print(f"estimation: {REFERENCE_ROWS:,} labelled reference rows, {args.rows:,} analysis rows")
    classifier, regressor = classifier_data(args.rows), regressor_data(args.rows)
    results: dict[str, Any] = {"classifier": classifier, "regressor": regressor,
                               "loopml cbpe": loopml_cbpe(classifier, args.repeat),
                               "loopml dle": loopml_dle(regressor, args.repeat)}
    if not args.skip_peers:
        results["nannyml cbpe"] = nannyml_estimate("cbpe", classifier, work, args.peer_repeat)
        results["nannyml dle"] = nannyml_estimate("dle", regressor, work, args.peer_repeat)
    for key in ("loopml cbpe", "nannyml cbpe", "loopml dle", "nannyml dle"):
        if key in results:
            m = results[key]
            print(f"  {m.what:<26} fit {_s(m.fit):>8}  estimate {_s(m.estimate):>8}  total {_s(m.seconds):>8}  "
                  f"value {_v(m.value)}  {m.note[:200]}")
    print(f"  true accuracy of the analysis rows {classifier.truth:.4f} (reference {classifier.reference_metric:.4f}); "
          f"true MAE {regressor.truth:.4f} (reference {regressor.reference_metric:.4f})")
    return results


# -- 3. endpoint -----------------------------------------------------------------------------


def measure_endpoint(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """serving.py's platform and wine endpoint: ``/invocations`` capture on, then off; medians of rounds."""
    home = work / "home"
    deployed, X, model, _, _ = serving_bench.serve_wine(home)
    target = serving_bench.loopml_targets(deployed, list(X.columns))[0]  # /invocations
    same = serving_bench.check_predictions([target], X, model)
    busy = serving_bench.idle_cpu_use(platform_pids(home))
    row = X.iloc[serving_bench.TIMED_ROW].tolist()
    print(f"measuring {target.name}, capture on ({args.rounds} round(s))")
    on = [serving_bench.measure(target, row, args) for _ in range(args.rounds)]
    print("restarting the platform service with capture off (capture_sample = 0)")
    serving_bench.capture_off(home)
    off_target = dataclasses.replace(target, name=target.name + serving_bench.CAPTURE_OFF)
    off = [serving_bench.measure(off_target, row, args) for _ in range(args.rounds)]
    return {"on": serving_bench.median_result(on), "off": serving_bench.median_result(off), "same": same,
            "busy": busy}


# -- report ----------------------------------------------------------------------------------


def goals(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met); ``met`` None where there is no target."""
    rows: list[tuple[str, str, str, bool | None]] = []
    drift = results.get("drift")
    if drift:
        mine, plain = drift["loopml"], drift["scipy"]
        ratio = mine.seconds / plain.seconds
        rows += [("drift: loopml / scipy baseline time", f"{ratio:.2f}x", "<= 2x", ratio <= 2),
                 ("drift: loopml seconds", f"{mine.seconds:.3f} s", "< 1 s", mine.seconds < 1)]
        evidently = drift.get("evidently")
        if evidently and evidently.seconds:
            speedup = evidently.seconds / mine.seconds
            same = set(evidently.flagged) == set(mine.flagged)
            rows += [("drift: Evidently time / loopml time", f"{speedup:.1f}x", ">= 5x", speedup >= 5),
                     ("drift: same features flagged as Evidently",
                      f"loopml {sorted(mine.flagged)}, Evidently {sorted(evidently.flagged)}", "equal", same)]
        elif evidently:
            rows.append(("drift: vs Evidently", "Evidently failed", ">= 5x, same features", False))
    estimation = results.get("estimation")
    if estimation:
        mine, peer = estimation["loopml cbpe"], estimation.get("nannyml cbpe")
        if peer and peer.seconds:
            gap, speedup = abs(mine.value - peer.value), peer.seconds / mine.seconds
            rows += [("CBPE: gap between loopml's and NannyML's estimated accuracy", f"{gap:.4f}", "<= 0.02",
                      gap <= 0.02),
                     ("CBPE: NannyML time / loopml time (fit + estimate)", f"{speedup:.1f}x", ">= 5x", speedup >= 5)]
        elif peer:
            rows.append(("CBPE: vs NannyML", "NannyML failed", "within 0.02, >= 5x", False))
        mine, peer = estimation["loopml dle"], estimation.get("nannyml dle")
        truth = estimation["regressor"].truth
        rows.append(("DLE: loopml estimated MAE / true MAE", f"{mine.value / truth:.3f}", "no target", None))
        if peer and peer.seconds:
            rows += [("DLE: NannyML estimated MAE / true MAE", f"{peer.value / truth:.3f}", "no target", None),
                     ("DLE: NannyML time / loopml time (fit + estimate)", f"{peer.seconds / mine.seconds:.2f}x",
                      "no target", None)]
    endpoint = results.get("endpoint")
    if endpoint:
        on, off = endpoint["on"], endpoint["off"]
        ratio, added = (on.rps8 / off.rps8 if off.rps8 else float("inf")), on.p50_ms - off.p50_ms
        rows += [("endpoint: rps@8 capture on / off", f"{ratio:.2f}x", ">= 0.9x", ratio >= 0.9),
                 ("endpoint: p50 capture on - off", f"{added:+.2f} ms", "<= +0.5 ms", added <= 0.5),
                 ("endpoint: errors (non-200 answers)", str(on.errors + off.errors), "0", on.errors + off.errors == 0)]
    return rows


def report(results: dict[str, Any], args: argparse.Namespace, versions: str, took: float) -> str:
    flags = "".join(f" --{name.replace('_', '-')}" for name in ("skip_endpoint", "skip_peers") if getattr(args, name))
    lines = [
        "# Monitoring benchmark",
        "",
        f"`python bench/monitoring.py --rows {args.rows} --repeat {args.repeat} --peer-repeat {args.peer_repeat} "
        f"--rounds {args.rounds} --requests {args.requests} --warmup {args.warmup} --seconds {args.seconds:g}{flags}`"
        f" on this machine ({os.cpu_count()} CPUs, shared). {versions}. Load average before the run: "
        f"{results['load']}.",
        "",
        f"Seconds are medians over at least {args.repeat} runs (loopml, scipy) or {args.peer_repeat} (the peers, "
        f"each in a subprocess of its own venv reading the same rows from parquet; imports and reads not timed), "
        f"and at least {MIN_TIMED_S:g} s of runs in all; the notes say how many. Fit and estimate are medians "
        "apart, fit + estimate the median of their sums.",
    ]
    drift = results.get("drift")
    if drift:
        lines += ["", f"Drift report, {args.rows:,} reference and {args.rows:,} live rows x 10 features "
                  f"(8 numeric, 2 categorical; shifted: {', '.join(SHIFTED)}):", "",
                  "| what | seconds | features flagged | note |", "|---|---:|---|---|"]
        for m in drift.values():
            lines.append(f"| {m.what} | {_s(m.seconds)} | {', '.join(m.flagged) if m.flagged is not None else '-'} | "
                         f"{_cell(m.note)} |")
    estimation = results.get("estimation")
    if estimation:
        classifier, regressor = estimation["classifier"], estimation["regressor"]
        lines += ["", f"Estimation without labels: fit on {REFERENCE_ROWS:,} labelled reference rows, estimate over "
                  f"{args.rows:,} analysis rows (covariate shift). True accuracy of the analysis rows "
                  f"**{classifier.truth:.4f}** (reference {classifier.reference_metric:.4f}); true MAE "
                  f"**{regressor.truth:.4f}** (reference {regressor.reference_metric:.4f}).", "",
                  "| what | fit s | estimate s | fit + estimate s | estimate | error vs truth | note |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for key, truth in (("loopml cbpe", classifier.truth), ("nannyml cbpe", classifier.truth),
                           ("loopml dle", regressor.truth), ("nannyml dle", regressor.truth)):
            m = estimation.get(key)
            if m is None:
                continue
            error = f"{m.value - truth:+.4f}" if m.value is not None else "-"
            metric = "accuracy" if "cbpe" in key else "MAE"
            lines.append(f"| {m.what} | {_s(m.fit)} | {_s(m.estimate)} | {_s(m.seconds)} | {metric} {_v(m.value)} | "
                         f"{error} | {_cell(m.note)} |")
    endpoint = results.get("endpoint")
    if endpoint:
        lines += ["", f"Endpoint (bench/serving.py's platform and wine model, `/invocations`, one-row requests): "
                  f"{args.requests} sequential requests after {args.warmup} warm-up ones (p50, p99, rps@1), "
                  f"{serving_bench.CONNECTIONS} connections for {args.seconds:g} s (rps@8); medians of {args.rounds} "
                  f"round(s). {endpoint['busy']} (before measuring). Predictions as the local model's: "
                  f"{'yes' if endpoint['same'] else '**NO**'}.", "",
                  "| target | p50 ms | p99 ms | rps@1 | rps@8 | errors |", "|---|---:|---:|---:|---:|---:|"]
        for r in (endpoint["on"], endpoint["off"]):
            lines.append(f"| {r.target} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rps1:.0f} | {r.rps8:.0f} | {r.errors} |")
    lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    for what, measured, target, met in goals(results):
        shown = "-" if met is None else ("met" if met else "**not met**")
        lines.append(f"| {what} | {measured} | {target} | {shown} |")
    lines += ["", f"The whole run took {took:.0f} s."]
    return "\n".join(lines) + "\n"


def versions_line() -> str:
    import scipy
    import sklearn

    return (f"pandas {pd.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}, Python {sys.version.split()[0]}")


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _v(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cell(text: str) -> str:
    """A note fit for one table cell: one line, no pipes, short."""
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= 300 else flat[:297] + "..."


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="drift rows per side; estimation analysis rows")
    parser.add_argument("--repeat", type=int, default=5, help="least runs of each loopml / scipy timing (median)")
    parser.add_argument("--peer-repeat", type=int, default=5,
                        help="least runs of each Evidently / NannyML timing (median)")
    parser.add_argument("--rounds", type=int, default=3, help="endpoint rounds, capture on and off (medians)")
    parser.add_argument("--requests", type=int, default=500, help="timed one-connection requests per round")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests per round")
    parser.add_argument("--seconds", type=float, default=10, help="length of the 8-connection run per round")
    parser.add_argument("--skip-endpoint", action="store_true", help="no platform: the drift and estimation parts")
    parser.add_argument("--skip-peers", action="store_true", help="no Evidently, no NannyML (no venvs to build)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data files, platform home, logs)")
    args = parser.parse_args()

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-monitoring-"))
    results: dict[str, Any] = {"load": ", ".join(f"{n:.1f}" for n in os.getloadavg())}
    try:
        results["drift"] = measure_drift(args, work)
        results["estimation"] = measure_estimation(args, work)
        if not args.skip_endpoint:
            results["endpoint"] = measure_endpoint(args, work)
    finally:
        if (work / "home").exists():
            stop_platform(work / "home")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, versions_line(), time.monotonic() - began)
    results_file = RESULTS.with_name("monitoring-partial.md") if args.skip_endpoint or args.skip_peers else RESULTS
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
