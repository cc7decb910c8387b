"""Benchmark: ``loopml.log_model`` vs. MLflow's default ``log_model(registered_model_name=...)``.

Starts a lean MLflow server (the one ``loopml up`` runs) in a temp dir, trains one
scikit-learn model, and in ONE run alternates the two ways of logging + registering it:

- ``loopml.log_model(model, name, X, y)``: signature, input example, pinned requirements,
  reference sample, lineage tags, registration and alias;
- ``mlflow.sklearn.log_model(model, name=..., input_example=X[:5], registered_model_name=...)``
  with MLflow's default settings (requirements inferred).

Prints median seconds and the ratio, writes ``bench/results/registry.md``.
Target: loopml <= 0.4x MLflow's default. Usage: ``python bench/registry.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results" / "registry.md"


def start_mlflow(home: Path, port: int) -> subprocess.Popen:
    from loopml.registry.server import STORE_DIR, mlflow_server_command

    (home / STORE_DIR).mkdir(parents=True)
    argv, extra = mlflow_server_command(home, port)
    proc = subprocess.Popen(argv, env={**os.environ, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the MLflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from loopml.launcher import free_port_block

    home = Path(tempfile.mkdtemp(prefix="loopml-bench-registry-"))
    port = free_port_block(1)
    server = start_mlflow(home, port)
    os.environ.update({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "LOOPML_PROJECT": "bench"})
    try:
        loopml_s, mlflow_s = measure(args.repeat)
    finally:
        server.terminate()
        server.wait(30)
    ratio = statistics.median(loopml_s) / statistics.median(mlflow_s)
    text = "\n".join([
        "# Registry benchmark",
        "",
        f"`python bench/registry.py --repeat {args.repeat}`; log + register one scikit-learn model "
        "(LogisticRegression on the wine data, 13 features) in the same run; median wall seconds.",
        "",
        "| what | seconds | ratio |",
        "|---|---:|---|",
        f"| loopml.log_model (register + alias + reference sample) | {statistics.median(loopml_s):.2f} | "
        f"{ratio:.2f}x MLflow default |",
        f"| mlflow.sklearn.log_model(registered_model_name=...), defaults | {statistics.median(mlflow_s):.2f} | 1.00x |",
        "",
        "Target: loopml <= 0.4x MLflow's default.",
    ]) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


def measure(repeat: int) -> tuple[list[float], list[float]]:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    import loopml

    X, y = load_wine(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=5000).fit(X, y)
    mlflow.set_experiment("bench")
    loopml_s, mlflow_s = [], []
    with mlflow.start_run():
        for attempt in range(repeat + 1):  # the first round warms imports and connections
            start = time.perf_counter()
            loopml.log_model(model, "wine-loopml", X, y, metrics={"accuracy": model.score(X, y)})
            took_loopml = time.perf_counter() - start
            start = time.perf_counter()
            mlflow.sklearn.log_model(model, name="wine-default", input_example=X.iloc[:5],
                                     registered_model_name="bench.wine-default")
            took_mlflow = time.perf_counter() - start
            if attempt:
                loopml_s.append(took_loopml)
                mlflow_s.append(took_mlflow)
    return loopml_s, mlflow_s


if __name__ == "__main__":
    main()
