"""Log lines Cloud Logging understands: with ``K_SERVICE`` set (Cloud Run / Cloud Functions) or
``LOG_FORMAT=json``, every line written to stderr is one JSON object (Cloud Logging's structured
logging fields: ``severity``, ``message``, ``time``, ``logging.googleapis.com/trace`` and
``logging.googleapis.com/labels``); elsewhere, and with ``LOG_FORMAT=text``, today's plain lines.

Labels (``function``, ``trigger``, ``backup_log_id``) and the request's trace live in context
variables: the HTTP layer starts each request with ``begin_request``, the backup job adds what
it learns with ``set_label``. Records are already redacted when they are made
(``redact.install_log_redaction``); the formatter redacts the final line once more, since the CLI
writes its own lines without a record.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from dbbackup.redact import install_log_redaction, known_secrets, redact

LOG_FORMATS = ("json", "text")
TRACE_FIELD = "logging.googleapis.com/trace"
LABELS_FIELD = "logging.googleapis.com/labels"
PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"

_labels: ContextVar[dict[str, str] | None] = ContextVar("dbbackup_log_labels", default=None)
_trace: ContextVar[str | None] = ContextVar("dbbackup_log_trace", default=None)

_CLOUD_TRACE = re.compile(r"^([0-9a-f]{32})(?:/\d+)?(?:;o=\d)?$", re.I)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$", re.I)


def json_wanted(env: Mapping[str, str] | None = None) -> bool:
    """JSON when ``LOG_FORMAT=json``, or on Cloud Run/Functions unless ``LOG_FORMAT=text``; an
    unknown LOG_FORMAT falls back to that rule (logging must work before settings are read)."""
    env = os.environ if env is None else env
    chosen = env.get("LOG_FORMAT", "").strip().lower()
    if chosen in LOG_FORMATS:
        return chosen == "json"
    return bool(env.get("K_SERVICE"))


def severity(levelno: int) -> str:
    """Cloud Logging's LogSeverity for a Python level (NOTICE between INFO and WARNING)."""
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno > logging.INFO:
        return "NOTICE"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id of ``X-Cloud-Trace-Context: TRACE/SPAN;o=1`` or W3C ``traceparent``."""
    lower = {k.lower(): v for k, v in headers.items()}
    if match := _CLOUD_TRACE.match(lower.get("x-cloud-trace-context", "").strip()):
        return match.group(1).lower()
    if match := _TRACEPARENT.match(lower.get("traceparent", "").strip()):
        return match.group(1).lower()
    return None


def begin_request(headers: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """A request starts: its trace (``projects/<GOOGLE_CLOUD_PROJECT>/traces/<id>``), fresh labels."""
    env = os.environ if env is None else env
    found = trace_id(headers)
    project = env.get("GOOGLE_CLOUD_PROJECT", "").strip()
    _trace.set(f"projects/{project}/traces/{found}" if found and project else None)
    function = env.get("FUNCTION_TARGET", "").strip() or env.get("K_SERVICE", "").strip()
    _labels.set({"function": function} if function else {})


def set_label(name: str, value: str) -> None:
    """A label on every later line of this request or command (``trigger``, ``backup_log_id``)."""
    _labels.set({**(_labels.get() or {}), name: value})


def entry(severity_name: str, message: str, logger: str | None = None) -> str:
    """One structured line (no newline), redacted with the shapes and every remembered secret."""
    obj: dict[str, Any] = {
        "severity": severity_name,
        "message": redact(message, known_secrets()),
        "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }
    if logger:
        obj["logger"] = logger
    if trace := _trace.get():
        obj[TRACE_FIELD] = trace
    if labels := _labels.get():
        obj[LABELS_FIELD] = dict(labels)
    return json.dumps(obj, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            # Only when redaction was bypassed (a record made before it was installed): the
            # exception's type and one line, never a multi-line traceback.
            message += f" [{type(record.exc_info[1]).__name__}: {' '.join(str(record.exc_info[1]).split())}]"
        return entry(severity(record.levelno), message, record.name)


def configure(level: int = logging.INFO, stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Root logging to ``stream`` (stderr): JSON lines or plain ones, redacted from the first
    record on. Replaces the root's handlers (functions-framework's or a previous call's). True
    when the lines are JSON."""
    install_log_redaction()
    as_json = json_wanted(env)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from an earlier call, and plain console handlers (basicConfig's, a framework's)
        # that would write the same record a second time, as a plain line.
        console = type(old) is logging.StreamHandler and old.stream in (sys.stderr, sys.stdout)
        if getattr(old, "dbbackup_handler", False) or console:
            root.removeHandler(old)
    setattr(handler, "dbbackup_handler", True)  # noqa: B010 - a marker on a handler object
    root.addHandler(handler)
    root.setLevel(level)
    return as_json


def error_line(message: str, stream: TextIO | None = None, level: int = logging.ERROR) -> None:
    """One line of the CLI's own on stderr: plain as given, or one JSON object in JSON mode."""
    out = stream or sys.stderr
    print(entry(severity(level), message, "dbbackup.cli") if json_wanted() else message, file=out)
