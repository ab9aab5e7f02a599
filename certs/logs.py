"""One log format for the four daemons (``secnode serve``, ``central serve``, ``certs ocsp
serve``, ``certs tsa serve``): ``--log-format text`` (one human line) or ``json`` (one JSON
object per line, for a log shipper).

Every line has ``time`` (UTC, ISO 8601), ``level``, ``component`` (the logger name) and
``message``; a line written while a message is being handled also has ``message_id``,
``client`` and ``service`` (set once per request with :func:`bind`, carried by a context
variable so every log call below picks them up), and ``error_code`` when one is known
(``extra={"error_code": ...}`` or :func:`bind`). Nothing else is added: the formatter never
looks at arguments, so a secret can reach the log only if a caller writes it into a message.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

#: The fields of a request context, in the order a JSON line lists them.
CONTEXT_FIELDS: Final = ("message_id", "client", "service", "error_code")
FORMATS: Final = ("text", "json")

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "secnode_log_context", default=_EMPTY
)


def bind(**fields: object) -> None:
    """Add ``fields`` (``message_id``, ``client``, ``service``, ``error_code``) to every line
    logged from now on in this task (an aiohttp request runs in its own task)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {', '.join(sorted(unknown))}")
    merged = dict(_context.get())
    merged.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
    _context.set(merged)


@contextmanager
def scope(**fields: object) -> Iterator[None]:
    """A fresh context for one request (a keep-alive connection runs its requests in one
    task: without this, one request's fields would leak into the next one's lines)."""
    token = _context.set(_EMPTY)
    try:
        bind(**fields)
        yield
    finally:
        _context.reset(token)


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The context fields of ``record``: bound ones, overridden by ``extra=``."""
    out = dict(_context.get())
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None and value != "":
            out[name] = str(value)
    return out


def _iso(created: float) -> str:
    stamp = dt.datetime.fromtimestamp(created, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "component": record.name,
            "message": record.getMessage(),
        }
        line.update(context_of(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level component message [message_id=... client=... ...]``."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = context_of(record)
        tail = "".join(f" {k}={ctx[k]}" for k in CONTEXT_FIELDS if k in ctx)
        text = f"{_iso(record.created)} {record.levelname} {record.name} {record.getMessage()}"
        text += f" [{tail.strip()}]" if tail else ""
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: str = "text", level: str = "info") -> None:
    """Send the root logger's lines to stderr in ``log_format``; aiohttp's access log off."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warning is a log line too, not raw stderr
