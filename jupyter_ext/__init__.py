"""In the notebook: the jupyter-server extension, the ``%loopml`` magics and the widget panels.

Public surface (names are part of the product):

- panels (ipywidgets 8, :mod:`loopml.jupyter_ext.panels`): :class:`JobPanel`,
  :class:`JobsPanel`, :class:`PipelinePanel`, :class:`PipelinesPanel`, :class:`ModelsPanel`,
  :class:`EndpointPanel`, :class:`MonitorPanel` and :func:`dashboard`; they update from one background poller
  (:mod:`loopml.jupyter_ext.poller`) that never blocks cell execution and stops with them;
- magics (:mod:`loopml.jupyter_ext.magics`): ``%loopml <subcommand>`` and ``%%loopml
  submit``, loaded by :func:`load_ipython_extension` (``%load_ext loopml``);
- the server extension (:mod:`loopml.jupyter_ext.extension`), which makes the magics
  available in every Python kernel of a workspace.

Imports are lazy: the server extension must not pull ipywidgets into the Jupyter server.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JobPanel": "loopml.jupyter_ext.panels",
    "JobsPanel": "loopml.jupyter_ext.panels",
    "PipelinePanel": "loopml.jupyter_ext.panels",
    "PipelinesPanel": "loopml.jupyter_ext.panels",
    "ModelsPanel": "loopml.jupyter_ext.panels",
    "EndpointPanel": "loopml.jupyter_ext.panels",
    "MonitorPanel": "loopml.jupyter_ext.panels",
    "dashboard": "loopml.jupyter_ext.panels",
    "load_ipython_extension": "loopml.jupyter_ext.magics",
    "unload_ipython_extension": "loopml.jupyter_ext.magics",
    "_jupyter_server_extension_points": "loopml.jupyter_ext.extension",
}

__all__ = [name for name in _EXPORTS if not name.startswith("_")]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loopml.jupyter_ext' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
