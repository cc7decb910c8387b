"""Benchmark: notebook jobs on loopml vs. running papermill directly, side by side.

Starts a private loopml instance (Ray head, MLflow, platform service) in a temp dir, then
measures in one run, on the same machine and the same 1-cell scikit-learn notebook:

- ``loopml submit --wait`` (the real CLI: submit → SUCCEEDED, output and MLflow run stored),
  with job kernels sandboxed (``job_isolation = "bwrap"``, warm) and, on a second private
  instance, unsandboxed (``job_isolation = "off"``): the difference is what the sandbox costs
- the ``papermill`` CLI
- ``papermill.execute_notebook`` in-process (warm interpreter, a new kernel per run): the limit
- 4 jobs submitted at once vs. 4 concurrent Ray tasks each running papermill (sandboxed)

Prints a table with ratios and writes ``bench/results/jobs.md``. Targets:
submit→SUCCEEDED <= 1.0x the papermill CLI and <= 1.2x papermill in-process with the sandbox
on; 4 concurrent <= 1.2x the Ray tasks. Usage: ``python bench/jobs.py [--repeat N] [--no-off]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

RESULTS = Path(__file__).parent / "results" / "jobs.md"
LOOPML = str(Path(sys.executable).with_name("loopml"))
PAPERMILL = str(Path(sys.executable).with_name("papermill"))
CELL = (
    "from sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True)\n"
    "print(LogisticRegression(max_iter=200).fit(X, y).score(X, y))"
)


def one_cell_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per single-notebook measurement")
    parser.add_argument("--no-off", action="store_true", help='skip the job_isolation = "off" instance')
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loopml-bench-"))
    nb_path = one_cell_notebook(work / "one_cell.ipynb")
    papermill_cli = [PAPERMILL, "--no-progress-bar", str(nb_path), str(work / "out.ipynb")]
    run(papermill_cli, dict(os.environ))
    cli_s = [timed(lambda: run(papermill_cli, dict(os.environ))) for _ in range(args.repeat)]
    import papermill

    papermill.execute_notebook(str(nb_path), str(work / "out2.ipynb"), progress_bar=False)
    inproc_s = [timed(lambda: papermill.execute_notebook(str(nb_path), str(work / "out2.ipynb"),
                                                         progress_bar=False)) for _ in range(args.repeat)]
    off = None if args.no_off else on_loopml(work / "home-off", nb_path, "off", args.repeat, concurrent=False)
    sandboxed = on_loopml(work / "home", nb_path, "bwrap", args.repeat, concurrent=True)

    med = statistics.median
    limit, cli = med(inproc_s), med(cli_s)

    def row(name: str, seconds: list[float]) -> tuple[str, float, str]:
        return name, med(seconds), f"{med(seconds) / limit:.2f}x in-process, {med(seconds) / cli:.2f}x CLI"

    rows = [
        row("papermill in-process (the limit)", inproc_s),
        row("papermill CLI", cli_s),
        row("loopml submit --wait, sandboxed (bwrap, warm kernel)", sandboxed["submit"]),
        *([row('loopml submit --wait, job_isolation = "off"', off["submit"])] if off else []),
        ("4 concurrent loopml jobs (sandboxed)", med(sandboxed["four_jobs"]),
         f"{med(sandboxed['four_jobs']) / med(sandboxed['four_tasks']):.2f}x Ray tasks"),
        ("4 concurrent Ray tasks running papermill", med(sandboxed["four_tasks"]), "1.00x"),
    ]
    report(rows, args.repeat)


def on_loopml(home: Path, nb_path: Path, isolation: str, repeat: int, *, concurrent: bool) -> dict[str, list[float]]:
    """Times on a private loopml instance with ``job_isolation = isolation``: ``submit`` (the
    CLI's submit --wait) and, with ``concurrent``, ``four_jobs`` and ``four_tasks``."""
    from loopml import launcher
    from loopml.client import Client
    from loopml.launcher import free_port_block
    from loopml.settings import load_settings

    base = free_port_block(12)
    settings = load_settings(data_dir=home, port=base, mlflow_port=base + 1, ray_dashboard_port=base + 2,
                             ray_port=base + 3, serve_port=base + 11, job_isolation=isolation)
    print(f"starting a private loopml (job_isolation = {isolation!r}) in {settings.home} ...", file=sys.stderr)
    started = launcher.up(settings)
    env = {**os.environ, "LOOPML_URL": started.url, "LOOPML_TOKEN": started.admin_token}
    times: dict[str, list[float]] = {}
    try:
        client = Client(started.url, started.admin_token)
        client.create_project("bench")
        submit = [LOOPML, "submit", str(nb_path), "-P", "bench", "--wait"]
        run(submit, env)  # warm-up: first worker and kernel start, first sklearn import
        times["submit"] = [timed(lambda: run(submit, env)) for _ in range(repeat)]
        if concurrent:
            def four_jobs() -> None:
                ids = [client.submit("bench", nb_path).id for _ in range(4)]
                for job_id in ids:
                    assert client.wait("bench", job_id, poll_s=0.1).status.value == "SUCCEEDED"

            four_jobs()
            times["four_jobs"] = [timed(four_jobs) for _ in range(max(2, repeat // 2))]
            times["four_tasks"] = ray_tasks(started, nb_path, max(2, repeat // 2))
    finally:
        launcher.down(settings.home)
    return times


def ray_tasks(started, nb_path: Path, repeat: int) -> list[float]:
    """Wall time of 4 concurrent Ray tasks, each executing the notebook with papermill."""
    os.environ.update(started.ray_env)
    import ray

    ray.init(address=started.ray_address, log_to_driver=False)
    notebook_text = nb_path.read_text()

    @ray.remote(num_cpus=1)
    def execute(text: str) -> int:
        import tempfile as tmp

        import papermill

        with tmp.TemporaryDirectory() as folder:
            source = Path(folder) / "in.ipynb"
            source.write_text(text)
            papermill.execute_notebook(str(source), str(Path(folder) / "out.ipynb"), progress_bar=False)
        return 0

    ray.get([execute.remote(notebook_text) for _ in range(4)])  # warm workers
    times = [timed(lambda: ray.get([execute.remote(notebook_text) for _ in range(4)])) for _ in range(repeat)]
    ray.shutdown()
    return times


def report(rows: list[tuple[str, float, str]], repeat: int) -> None:
    lines = [
        "# Jobs benchmark",
        "",
        f"`python bench/jobs.py --repeat {repeat}` on {os.cpu_count()} cores; median wall seconds.",
        "",
        "| what | seconds | ratio |",
        "|---|---:|---|",
        *[f"| {name} | {seconds:.2f} | {ratio} |" for name, seconds, ratio in rows],
        "",
        "Targets: submit→SUCCEEDED <= 1.0x the papermill CLI and <= 1.2x papermill in-process with the sandbox on; "
        "4 concurrent jobs <= 1.2x 4 Ray tasks.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
