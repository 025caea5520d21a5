"""Structured service logs: one ``key=value`` line per event, job id on every job line.

    2026-11-24T12:00:00Z INFO animus3d.service event=accepted job_id=3f2a… client=8c1d… position=0
"""

from __future__ import annotations

import logging
import sys
import time

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _format_value(value: object) -> str:
    """One token of a log line: control characters, backslashes and quotes escaped, so user text
    (prompts, client names) can never forge a line or a field."""
    text = str(value)
    escaped = "".join(c if c.isprintable() and c not in '"\\' else _escape_char(c) for c in text)
    if escaped == "" or any(c.isspace() or c in '"=' for c in escaped) or escaped != text:
        return '"' + escaped + '"'
    return escaped


def _escape_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == " ":
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class KeyValueFormatter(logging.Formatter):
    """Formats ``log.info("accepted", extra={"job_id": ...})`` as ``event=accepted job_id=...``."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [stamp, record.levelname, record.name, f"event={_format_value(record.getMessage())}"]
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                parts.append(f"{key}={_format_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: int = logging.INFO, stream=None) -> None:
    """Sends all ``animus3d.*`` logs to ``stream`` (default stderr) as key=value lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("animus3d")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def job_logger(name: str, job_id: str) -> logging.LoggerAdapter:
    """A logger whose every line carries ``job_id``."""
    return _JobAdapter(logging.getLogger(name), {"job_id": job_id})


class _JobAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        extra = dict(self.extra)
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs
