"""The admin panel at ``<base>admin``: server-rendered pages for hub admins.

Projects (members, quotas), where each project stands in the loop, jobs and pipeline runs
across projects, models, endpoints, open alerts, the Ray cluster and recent errors, with
forms for the everyday admin actions. Who may see and act:
:mod:`~loopml.hub_config.admin.pages`; the routes: :mod:`~loopml.hub_config.admin.routes`.
"""

from loopml.hub_config.admin.routes import SECTIONS, router

__all__ = ["SECTIONS", "router"]
