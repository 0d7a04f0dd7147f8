"""Running the bundled PostgreSQL programs (pg_dump, psql): stderr captured and redacted, the
whole process group stopped on the way out. Their argv and environment come from
``conninfo.libpq_target`` (the password in the environment, never in argv)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from typing import IO, Protocol

from dbbackup.redact import redact


class LineSink(Protocol):
    def append(self, line: str, /) -> None: ...


def drain_lines(pipe: IO[bytes], sink: LineSink | deque[str], secrets: tuple[str, ...]) -> None:
    """Collect a program's stderr lines, redacted, into a bounded deque or another sink (run in a thread)."""
    for raw in iter(pipe.readline, b""):
        line = redact(raw.decode(errors="replace").rstrip(), secrets)
        if line:
            sink.append(line)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group (pg_dump may run under a wrapper), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM if grace else signal.SIGKILL)
    try:
        proc.wait(timeout=grace or None)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
