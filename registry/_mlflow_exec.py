"""``python -m loopml.registry._mlflow_exec server <mlflow server options>``: ``mlflow server``
in one process.

``mlflow server`` validates its options, prepares the store, builds the uvicorn command and
then runs uvicorn as a *child*, staying alive only to forward signals to it: a second
Python process holding all of MLflow (~190 MiB) for nothing. Here the CLI runs as usual, and
the moment it would start that child, this process becomes it (``exec``), with the same
command and environment. Only with job execution off (:mod:`loopml.registry.server` turns
it off), where the child is all ``mlflow server`` would run.
"""

from __future__ import annotations

import os
import sys


def _exec_instead(cmd, *, extra_env=None, **_ignored):
    os.execvpe(cmd[0], list(cmd), {**os.environ, **(extra_env or {})})


def main() -> None:
    import mlflow.server
    from mlflow.cli import cli

    mlflow.server._exec_cmd = _exec_instead
    cli.main(args=sys.argv[1:], prog_name="mlflow")


if __name__ == "__main__":
    main()
