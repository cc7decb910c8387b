"""Small notebooks the integration tests submit, built with nbformat."""

from __future__ import annotations

from pathlib import Path

import nbformat


def notebook(*cells: str, parameters: str | None = None) -> dict:
    """A Python notebook: an optional ``parameters``-tagged cell, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.from_dict(nb)


def write(path: Path, nb: dict) -> Path:
    nbformat.write(nbformat.from_dict(nb), str(path))
    return path


TRAIN = notebook(
    "from sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True)\n"
    "model = LogisticRegression(C=C, max_iter=max_iter).fit(X, y)\n"
    "print('label', repr(label))\n"
    "print('accuracy', round(model.score(X, y), 3))",
    parameters='C = 1.0\nmax_iter = 100\nlabel = "default"',
)

SLOW = notebook(
    "import os, time\nprint('kernel pid', os.getpid(), flush=True)",
    "for i in range(int(seconds * 10)):\n    time.sleep(0.1)",
    "print('done')",
    parameters="seconds = 30.0",
)

TRAIN_AND_LOG = notebook(
    "import json\n"
    "import mlflow\n"
    "import loopml\n"
    "from sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)\n"
    "model = LogisticRegression(C=C, max_iter=500).fit(X, y)\n"
    "mlflow.log_metric('train_accuracy', model.score(X, y))",
    "version = loopml.log_model(model, model_name, X, y, metrics={'accuracy': model.score(X, y)})\n"
    "print(json.dumps({'version': version.version, 'job': loopml.current_job().job_id,\n"
    "                  'predictions': model.predict(X.iloc[:10]).tolist()}))",
    parameters='C = 1.0\nmodel_name = "iris"',
)
