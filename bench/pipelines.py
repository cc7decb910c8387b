"""Benchmark: a 3-step pipeline vs. the same notebooks as three ``loopml submit --wait`` calls, and a cached re-run.

Starts a private headless loopml (``loopml up --no-hub``: Ray head, MLflow, platform service)
in a temp dir and measures, in one run, alternating within each round:

- **pipeline**: ``prepare → train → evaluate`` (three tiny notebooks; ``prepare`` writes
  ``data/train.csv``, ``train`` reads it and writes ``data/model.json``, ``evaluate`` reads
  both), values passed on as ``{{ steps.<id>.outputs.<name> }}`` parameters, files as MLflow
  artifacts; run with ``no_cache`` (every step a job) as ``loopml pipelines run --wait --json``
  (a subprocess, like the submits);
- **three submits**: the same notebooks as three sequential ``loopml submit --wait --json``
  calls (the CLI as a subprocess, argv list, no shell), each value passed on by hand with
  ``-p`` (``loopml submit`` ships no files: the downstream notebooks make the data themselves
  when none was shipped);
- **cached re-run**: the pipeline again with the cache on, right after a full run (every step
  CACHED).

Prints median wall seconds, the ratios, and where the time of each path goes (from the jobs'
own timestamps: the handoff from one step's end to the next step's submission, the wait from
submission to start, the run), and writes ``bench/results/pipelines.md``. Targets: pipeline
<= 1.1x the three submits; cached re-run <= 0.2x the pipeline.
Usage: ``python bench/pipelines.py [--rounds N] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from _platform import VENV_BIN, platform_env, stop_platform  # bench/ is on sys.path

RESULTS = Path(__file__).parent / "results" / "pipelines.md"
LOOPML = str(VENV_BIN / "loopml")
PROJECT = "bench"

MAKE_DATA = (
    "def make_data(rows):\n"
    "    rng = np.random.default_rng(0)\n"
    "    X = rng.normal(size=(rows, 4))\n"
    "    return np.column_stack([X, (X[:, 0] + X[:, 1] > 0).astype(float)])\n"
)
PREPARE = (
    ["rows = 200"],
    "from pathlib import Path\nimport numpy as np\nimport loopml\n" + MAKE_DATA +
    "Path('data').mkdir(exist_ok=True)\n"
    "np.savetxt('data/train.csv', make_data(rows), delimiter=',')\n"
    "loopml.set_output('rows', rows)",
)
TRAIN = (
    ["rows = 0", "C = 1.0"],
    "import json\nfrom pathlib import Path\nimport numpy as np\nimport loopml\n"
    "from sklearn.linear_model import LogisticRegression\n" + MAKE_DATA +
    "shipped = Path('data/train.csv')  # the pipeline ships it; `loopml submit` ships no files\n"
    "data = np.loadtxt(shipped, delimiter=',') if shipped.exists() else make_data(rows)\n"
    "assert len(data) == rows, (len(data), rows)\n"
    "model = LogisticRegression(C=C).fit(data[:, :4], data[:, 4])\n"
    "Path('data').mkdir(exist_ok=True)\n"
    "Path('data/model.json').write_text(json.dumps({'coef': model.coef_[0].tolist(), "
    "'intercept': float(model.intercept_[0])}))\n"
    "loopml.set_output('accuracy', float(model.score(data[:, :4], data[:, 4])))",
)
EVALUATE = (
    ["accuracy = 0.0", "min_accuracy = 0.8"],
    "import json\nfrom pathlib import Path\nimport numpy as np\nimport loopml\n" + MAKE_DATA +
    "data = np.loadtxt('data/train.csv', delimiter=',') if Path('data/train.csv').exists() else make_data(200)\n"
    "fitted = json.loads(Path('data/model.json').read_text()) if Path('data/model.json').exists() else None\n"
    "if fitted:\n"
    "    guess = data[:, :4] @ np.array(fitted['coef']) + fitted['intercept'] > 0\n"
    "    assert abs((guess == data[:, 4]).mean() - accuracy) < 1e-9\n"
    "assert accuracy >= min_accuracy, accuracy\n"
    "loopml.set_output('passed', True)",
)
NOTEBOOKS = {"prepare": PREPARE, "train": TRAIN, "evaluate": EVALUATE}

PIPELINE = """\
name: bench
steps:
  prepare: {notebook: prepare.ipynb, outputs: [data/train.csv]}
  train:
    notebook: train.ipynb
    outputs: [data/model.json]
    parameters: {rows: "{{ steps.prepare.outputs.rows }}"}
  evaluate:
    notebook: evaluate.ipynb
    parameters: {accuracy: "{{ steps.train.outputs.accuracy }}"}
"""


def write_notebooks(folder: Path) -> Path:
    """The three notebooks and the pipeline file in ``folder``; returns the pipeline file."""
    for name, (parameters, cell) in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        tagged = nbformat.v4.new_code_cell("\n".join(parameters))
        tagged.metadata["tags"] = ["parameters"]
        nb.cells = [tagged, nbformat.v4.new_code_cell(cell)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    path = folder / "bench.pipeline.yaml"
    path.write_text(PIPELINE)
    return path


def start_platform(home: Path) -> dict:
    """``loopml up --no-hub`` in ``home`` with ports of its own; returns its client.json."""
    from loopml.launcher import free_port_block

    base = free_port_block(12)
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f"port = {base}\nmlflow_port = {base + 1}\nray_dashboard_port = {base + 2}\nray_port = {base + 3}\n"
        f"serve_port = {base + 11}\n")
    started = subprocess.run([LOOPML, "up", "--no-hub", "--data-dir", str(home)], env=platform_env(home),
                             capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"loopml up failed:\n{started.stdout}\n{started.stderr}")
    return json.loads((home / "client.json").read_text())


def three_submits(folder: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """The notebooks as three sequential ``loopml submit --wait --json``; (wall seconds, job ids)."""
    def submit(name: str, **parameters: object) -> dict:
        argv = [LOOPML, "submit", str(folder / f"{name}.ipynb"), "-P", PROJECT, "--wait", "--json"]
        for key, value in parameters.items():
            argv += ["-p", f"{key}={value}"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"loopml submit {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return json.loads(done.stdout)

    start = time.perf_counter()
    prepared = submit("prepare")
    trained = submit("train", rows=prepared["outputs"]["rows"])
    evaluated = submit("evaluate", accuracy=trained["outputs"]["accuracy"])
    took = time.perf_counter() - start
    return took, [prepared["id"], trained["id"], evaluated["id"]]


def pipeline_run(client, path: Path, env: dict[str, str], *, no_cache: bool, expect: str) -> tuple[float, object]:
    """``loopml pipelines run --wait --json`` (one CLI start, as each submit pays); (wall seconds,
    the run). Every step must end ``expect``."""
    argv = [LOOPML, "pipelines", "run", str(path), "-P", PROJECT, "--wait", "--json"] + (["--no-cache"] * no_cache)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"loopml pipelines run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    run = client.pipeline_run(PROJECT, json.loads(done.stdout)["id"])
    statuses = [step.status.value for step in run.steps]
    if run.status.value != "SUCCEEDED" or set(statuses) != {expect}:
        raise SystemExit(f"pipeline run {run.id} {run.status.value}, steps {statuses} (wanted {expect}): "
                         + "; ".join(f"{s.id}: {s.message}" for s in run.steps if s.message))
    return took, run


def phases(jobs: list, begun, ended, wall: float) -> dict[str, float]:
    """Where the ``wall`` seconds of one path went, from its jobs' timestamps: ``handoff`` from
    ``begun`` (or the previous job's end) to each job's submission, ``queued`` from submission
    to start, ``running`` from start to end, ``tail`` from the last job's end to ``ended``
    (None: the path records no end), and ``client``, the rest (CLI starts, requests, polling)."""
    handoff = queued = running = 0.0
    previous = begun
    for job in jobs:
        handoff += (job.created_at - previous).total_seconds()
        queued += (job.started_at - job.created_at).total_seconds()
        running += (job.finished_at - job.started_at).total_seconds()
        previous = job.finished_at
    tail = (ended - previous).total_seconds() if ended is not None else 0.0
    return {"handoff": handoff, "queued": queued, "running": running, "tail": tail,
            "client": wall - handoff - queued - running - tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each: all three paths)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (platform home and logs)")
    args = parser.parse_args()

    from loopml.client import Client

    work = Path(tempfile.mkdtemp(prefix="loopml-bench-pipelines-"))
    folder = work / "pipeline"
    folder.mkdir()
    path = write_notebooks(folder)
    home = work / "home"
    print(f"starting a private loopml in {home} ...", file=sys.stderr)
    try:
        config = start_platform(home)
        env = {**platform_env(home), "LOOPML_URL": config["url"], "LOOPML_TOKEN": config["token"]}
        client = Client(config["url"], config["token"])
        client.create_project(PROJECT)
        three_submits(folder, env)  # warm-up: first workers and kernels, first imports
        pipeline_run(client, path, env, no_cache=True, expect="SUCCEEDED")

        times: dict[str, list[float]] = {"submits": [], "pipeline": [], "cached": []}
        split: dict[str, list[dict[str, float]]] = {"submits": [], "pipeline": []}
        for round_no in range(args.rounds):
            order = ("submits", "pipeline") if round_no % 2 == 0 else ("pipeline", "submits")
            for what in order:
                if what == "submits":
                    took, ids = three_submits(folder, env)
                    jobs = [client.job(PROJECT, job_id) for job_id in ids]
                    split["submits"].append(phases(jobs, jobs[0].created_at, None, took))
                else:
                    took, run = pipeline_run(client, path, env, no_cache=True, expect="SUCCEEDED")
                    jobs = [client.job(PROJECT, step.job_id) for step in run.steps]
                    split["pipeline"].append(phases(jobs, run.created_at, run.finished_at, took))
                times[what].append(took)
            times["cached"].append(pipeline_run(client, path, env, no_cache=False, expect="CACHED")[0])
            print(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  file=sys.stderr)
        report(times, split, args)
    finally:
        stop_platform(home)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(times: dict[str, list[float]], split: dict[str, list[dict[str, float]]],
           args: argparse.Namespace) -> None:
    med = statistics.median
    submits, pipeline, cached = med(times["submits"]), med(times["pipeline"]), med(times["cached"])

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f}–{max(values):.2f}"

    def split_row(name: str, parts: list[dict[str, float]]) -> str:
        return f"| {name} | " + " | ".join(f"{med([p[k] for p in parts]):.2f}"
                                           for k in ("handoff", "queued", "running", "tail", "client")) + " |"

    lines = [
        "# Pipelines benchmark",
        "",
        f"`python bench/pipelines.py --rounds {args.rounds}` on {os.cpu_count()} cores; median wall seconds "
        "(min–max).",
        "",
        "| what | seconds | ratio |",
        "|---|---:|---|",
        f"| three sequential `loopml submit --wait` | {submits:.2f} ({spread(times['submits'])}) | 1.00x |",
        f"| pipeline prepare → train → evaluate (no cache) | {pipeline:.2f} ({spread(times['pipeline'])}) | "
        f"{pipeline / submits:.2f}x the submits |",
        f"| the pipeline again, every step cached | {cached:.2f} ({spread(times['cached'])}) | "
        f"{cached / pipeline:.2f}x the pipeline |",
        "",
        "Where the time goes (median seconds over the three jobs, summed; from the jobs' timestamps):",
        "",
        "| path | handoff: previous end → next submitted | queued: submitted → started | running | "
        "tail: last end → run ended | client: the rest |",
        "|---|---:|---:|---:|---:|---:|",
        split_row("three submits", split["submits"]),
        split_row("pipeline", split["pipeline"]),
        "",
        "The submits' handoff starts at the first job's submission (each CLI start, its request and its "
        "last poll are in client); the pipeline's at the run's row (its POST and the client's polling are in "
        "client).",
        "",
        "Targets: pipeline <= 1.1x the three submits; cached re-run <= 0.2x the pipeline.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
