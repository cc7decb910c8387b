"""What belongs to one loopml instance on this machine, for every process that needs it:
its private files in the data dir (0700 dirs, 0600 files written atomically), its generated
secrets (``secrets.json``) and the marker in the environment of every process its hub starts.

Foundation code: imports only :mod:`loopml.errors`, so the launcher, the registry's MLflow
auth and the hub's spawner share it without depending on each other.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from loopml.errors import InvalidInput

SECRETS_FILE = "secrets.json"
MARKER = "LOOPML_HUB_INSTANCE"  # in the environment of the hub and of every process it starts


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; an existing directory is left as it is."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def stored_secret(home: Path, name: str) -> str:
    """Secret ``name`` of ``secrets.json`` (0600), generated there on first use."""
    path = home / SECRETS_FILE
    try:
        stored = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        raise InvalidInput(f"{path} is not valid JSON; fix or remove it (new secrets are then generated)") from None
    if not stored.get(name):
        stored[name] = secrets.token_urlsafe(32)
        write_private(path, json.dumps(stored, indent=2))
    return stored[name]
