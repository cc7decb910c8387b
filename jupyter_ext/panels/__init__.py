"""The loopml panels (ipywidgets 8): jobs, pipelines, models, endpoints and monitoring, live in the notebook.

Every panel is an ``ipywidgets.VBox`` built as ``Panel(<its own args>, client=None,
project=None, *, poll_s=...)``: ``client`` defaults to the workspace's
(:func:`loopml.jupyter_ext.context.workspace_client`), ``project`` to ``LOOPML_PROJECT`` or the
caller's only project. A panel fetches nothing in its constructor: the one poller thread
(:mod:`loopml.jupyter_ext.poller`) refreshes it every ``poll_s`` seconds (``poll_s=None``: only
when :meth:`refresh` is called), so showing a panel never blocks the cell. ``refresh()`` never
raises: platform errors show in red in the panel's ``error`` line. Buttons act in a
short-lived thread. ``close()`` stops the polling and closes the widgets.
"""

from loopml.jupyter_ext.panels.dashboard import dashboard
from loopml.jupyter_ext.panels.endpoint import EndpointPanel
from loopml.jupyter_ext.panels.job import JobPanel
from loopml.jupyter_ext.panels.jobs import JobsPanel
from loopml.jupyter_ext.panels.loop import LoopPanel
from loopml.jupyter_ext.panels.models import ModelsPanel
from loopml.jupyter_ext.panels.monitor import MonitorPanel
from loopml.jupyter_ext.panels.pipeline import PipelinePanel, PipelinesPanel

__all__ = ["EndpointPanel", "JobPanel", "JobsPanel", "LoopPanel", "ModelsPanel", "MonitorPanel", "PipelinePanel",
           "PipelinesPanel", "dashboard"]
