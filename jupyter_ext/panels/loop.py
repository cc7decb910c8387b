"""``LoopPanel``: where the project stands in the loop, one row of stages (the dashboard's top row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets

from loopml.cli.common import fmt_time
from loopml.client import Client
from loopml.jupyter_ext.panels._base import Panel, set_trait
from loopml.jupyter_ext.panels._html import Raw, colored, esc, table

if TYPE_CHECKING:
    from loopml.loop_state import LoopStage, LoopState

REACHED_COLOR = "#2e7d32"
NOT_YET_COLOR = "#9e9e9e"


class LoopPanel(Panel):
    """The project's stages (workspace opened → … → feedback received) in :attr:`row`, each with
    the object that reached it and when, refreshed every ``poll_s`` seconds; :attr:`state` is
    the last :class:`~loopml.loop_state.LoopState` fetched."""

    def __init__(self, client: Client | None = None, project: str | None = None, *, poll_s: float | None = 15.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.state: LoopState | None = None
        self.row = ipywidgets.HTML("loading…")
        self.children = [self.row, self.error]
        self._start_polling()

    def _update(self) -> None:
        self.state = self.client.loop(self.project)
        set_trait(self.row, "value", table([stage.name.label for stage in self.state.stages],
                                           [[_cell(stage) for stage in self.state.stages]]))


def _cell(stage: LoopStage) -> Raw:
    if not stage.reached:  # a stage that cannot be told now says why instead
        return colored(stage.note or "○ not yet", NOT_YET_COLOR)
    when = f"<br><small>{esc(fmt_time(stage.at))}</small>" if stage.at else ""
    return Raw(f"{colored('✓', REACHED_COLOR, bold=True)} {esc(str(stage.object) if stage.object else '')}{when}")
