"""The order of a sandbox's mounts: a project directory bound inside the hidden data dir
stays visible (and writable) while the rest of the data dir is hidden, wherever the data dir
lies (here inside the sandbox's working dir, as under a bound folder of the host)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loopml import sandbox

pytestmark = pytest.mark.skipif(sandbox.check() is not None, reason=str(sandbox.check()))

PROBE = """
import os, sys
data, project = sys.argv[1], sys.argv[2]
print(sorted(os.listdir(data)), sorted(os.listdir(project)))
open(os.path.join(project, "written"), "w").write("ok")
"""


def test_a_project_dir_inside_the_hidden_data_dir_stays_visible(tmp_path):
    workdir = tmp_path / "work"
    data = workdir / "data"
    project = data / "projects" / "a"
    (data / "projects" / "b").mkdir(parents=True)
    project.mkdir(parents=True)
    (data / "secrets.json").write_text("{}")
    (project / "train.ipynb").write_text("{}")

    argv = sandbox.wrap([sys.executable, "-c", PROBE, str(data), str(project)], workdir=str(workdir),
                        rw=[str(project)], hide=sandbox.hidden_paths(data))
    done = subprocess.run(argv, env=sandbox.environment({}, str(workdir)), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['projects'] ['train.ipynb']"  # no secrets.json, no project b
    assert (project / "written").read_text() == "ok"
