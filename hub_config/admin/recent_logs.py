"""The platform's last warnings and errors, kept in memory for the admin panel.

:class:`RecentLogs` is a logging handler on the root logger that keeps the newest
``capacity`` records at WARNING or above (older ones drop off). What it keeps is already
formatted and redacted: anything that looks like a credential (``token=…``, ``Bearer …``,
``Authorization: …``) is replaced by ``[redacted]``, and an exception keeps only its type and
first line, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass

CAPACITY = 200
MAX_MESSAGE_CHARS = 2000

_CREDENTIAL = r"\b(?:authorization|bearer|token|api[_-]?key|secret|password|client_secret|access_token)\b['\"]?"
# ``token=abc``, ``"password": "x"``: any value assigned to a credential word.
_ASSIGNED = re.compile(rf"(?P<key>{_CREDENTIAL}\s*[:=]\s*['\"]?(?:(?:bearer|token)\s+)?)[^\s'\",;&]+", re.IGNORECASE)
# ``Bearer abc…``, ``token abc…``: a credential word then something token-like (16+ characters,
# so that ``token expired`` stays readable).
_FOLLOWED = re.compile(rf"(?P<key>{_CREDENTIAL}\s+(?:(?:bearer|token)\s+)?)[A-Za-z0-9_\-.~+/]{{16,}}=*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the values that follow credential words replaced by ``[redacted]``."""
    for pattern in (_ASSIGNED, _FOLLOWED):
        text = pattern.sub(lambda m: f"{m.group('key')}[redacted]", text)
    return text


@dataclass(frozen=True)
class LogEntry:
    at: dt.datetime
    level: str
    logger: str
    message: str


class RecentLogs(logging.Handler):
    """Keeps the newest ``capacity`` WARNING+ records as :class:`LogEntry` (thread-safe)."""

    def __init__(self, capacity: int = CAPACITY, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._entries_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                message += f" ({type(exc).__name__}: {first_line})"
            entry = LogEntry(at=dt.datetime.fromtimestamp(record.created, dt.timezone.utc), level=record.levelname,
                             logger=record.name, message=redact(message)[:MAX_MESSAGE_CHARS])
        except Exception:  # noqa: BLE001 - a handler must never raise into the code that logs
            self.handleError(record)
            return
        with self._entries_lock:
            self._entries.append(entry)

    def entries(self) -> list[LogEntry]:
        """The kept records, newest first."""
        with self._entries_lock:
            return list(reversed(self._entries))

    def install(self) -> RecentLogs:
        logging.getLogger().addHandler(self)
        return self

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
