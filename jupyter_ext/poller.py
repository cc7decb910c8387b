"""One background thread that refreshes every open panel, so cell execution never waits on the platform.

Contract:

- :func:`register` ``(target, interval_s)`` schedules ``target.refresh()`` every ``interval_s``
  seconds (measured from the end of the previous refresh, so a slow platform never piles
  refreshes up); the first refresh runs after ``first_in`` seconds (default: at once).
  Registering a registered target again changes its interval. Thread-safe.
- :func:`unregister` stops it; a refresh already running finishes. Thread-safe, idempotent.
- ONE daemon thread (named :data:`THREAD_NAME`) serves every target. It starts with the first
  registration and ends as soon as nothing is registered, so closing the last panel leaves no
  thread behind (once a refresh in flight, at most the client's timeout, has returned).
- A refresh that raises or is slow never stops the others: errors are logged at debug level
  (panels show their own errors; a background thread must not print into whatever cell runs),
  and a slow one only delays the next ones.
- While a cell runs, the poller takes at most :data:`DUTY` of one core's CPU time: after each
  refresh it rests for the CPU time that refresh used times ``(1 - duty) / duty``. Cells run on
  the kernel's main thread and share the GIL with this one, so with a hundred panels their
  refresh interval stretches during a cell instead of the cell slowing down. Between cells
  (the kernel waits for the user) the cap is :data:`IDLE_DUTY`: panels refresh on time. Inside
  IPython the poller follows cells through the shell's ``pre_run_cell``/``post_run_cell``
  events; elsewhere (scripts, tests) it assumes a cell always runs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

THREAD_NAME = "loopml-poller"
DUTY = 0.02
"""Share of one core's CPU time the poller may use while a cell runs."""
IDLE_DUTY = 0.5
"""The same between cells: a hundred JobPanels refreshing every second take ~40% of a core in a kernel
(fetch, then comm messages); half a core keeps them on time and leaves the rest to the kernel's own threads."""


class Refreshable(Protocol):
    def refresh(self) -> None: ...


@dataclass
class _Entry:
    target: Refreshable
    interval_s: float
    due: float


class Poller:
    """The scheduler behind the module functions; one instance, :data:`POLLER`, serves a kernel."""

    def __init__(self, duty: float = DUTY, idle_duty: float = IDLE_DUTY) -> None:
        for name, value in (("duty", duty), ("idle_duty", idle_duty)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {value!r}")
        self.duty, self.idle_duty = duty, idle_duty
        self._cond = threading.Condition()
        self._entries: dict[int, _Entry] = {}
        self._thread: threading.Thread | None = None  # None once the thread decided to end
        self._last_thread: threading.Thread | None = None  # joined by wait_stopped: it may still be exiting
        self._last_end = 0.0  # when the last refresh ended, and the CPU time it used
        self._last_cpu = 0.0
        # The first panel is made in a cell, whose post_run_cell ends this; without a shell, always.
        self._in_cell = True
        self._watched: set[int] = set()

    # -- registration -------------------------------------------------------------------------

    def register(self, target: Refreshable, interval_s: float, *, first_in: float = 0.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self._watch_ipython()
        with self._cond:
            self._entries[id(target)] = _Entry(target, interval_s, time.monotonic() + first_in)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._last_thread = self._thread
                self._thread.start()
            self._cond.notify()

    def unregister(self, target: Refreshable) -> None:
        with self._cond:
            entry = self._entries.get(id(target))
            if entry is not None and entry.target is target:
                del self._entries[id(target)]
                self._cond.notify()

    def is_registered(self, target: Refreshable) -> bool:
        with self._cond:
            entry = self._entries.get(id(target))
            return entry is not None and entry.target is target

    def thread(self) -> threading.Thread | None:
        """The poller thread while it runs, else ``None``."""
        with self._cond:
            return self._thread

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until no poller thread is alive (nothing registered); ``False`` if one still is after ``timeout``."""
        with self._cond:
            last = self._last_thread
        if last is None:
            return True
        if last is not threading.current_thread():
            last.join(timeout)
        return not last.is_alive()

    # -- cells --------------------------------------------------------------------------------

    def watch_cells(self, shell: Any) -> None:
        """Follow ``shell``'s cells (an IPython shell's ``events``): :attr:`duty` while one runs,
        :attr:`idle_duty` between them. Idempotent; done on the first registration in IPython."""
        with self._cond:
            if id(shell) in self._watched:
                return
            self._watched.add(id(shell))
        shell.events.register("pre_run_cell", self._cell_started)
        shell.events.register("post_run_cell", self._cell_finished)

    def _watch_ipython(self) -> None:
        ipython = sys.modules.get("IPython")  # a kernel has it loaded; nothing to import elsewhere
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is not None and hasattr(shell, "events"):
            self.watch_cells(shell)

    def _cell_started(self, *_: Any) -> None:
        with self._cond:
            self._in_cell = True

    def _cell_finished(self, *_: Any) -> None:
        with self._cond:
            self._in_cell = False
            self._cond.notify()  # a rest computed for a cell may be over now

    # -- the thread ---------------------------------------------------------------------------

    def _next(self) -> _Entry | None:
        """Block until an entry is due and the duty cap allows a refresh, and return the entry;
        ``None`` (thread marked ended) when none is left."""
        with self._cond:
            while True:
                if not self._entries:
                    self._thread = None
                    return None
                entry = min(self._entries.values(), key=lambda e: e.due)
                duty = self.duty if self._in_cell else self.idle_duty
                start = max(entry.due, self._last_end + self._last_cpu * (1 - duty) / duty)
                now = time.monotonic()
                if start <= now:
                    return entry
                self._cond.wait(start - now)

    def _run(self) -> None:
        while (entry := self._next()) is not None:
            cpu = time.thread_time()
            try:
                entry.target.refresh()
            except Exception:
                log.debug("refresh of %r failed", entry.target, exc_info=True)
            cpu = time.thread_time() - cpu
            with self._cond:
                now = time.monotonic()
                self._last_end, self._last_cpu = now, cpu
                if self._entries.get(id(entry.target)) is entry:
                    entry.due = now + entry.interval_s


POLLER = Poller()

register = POLLER.register
unregister = POLLER.unregister
is_registered = POLLER.is_registered
thread = POLLER.thread
wait_stopped = POLLER.wait_stopped
