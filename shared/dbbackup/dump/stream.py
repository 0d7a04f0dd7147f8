"""pg_dump's stdout -> rewrite -> gzip, as an iterator of compressed chunks.

A profile may run several programs (pg_dumpall, then pg_dump twice) with our own SQL between
them; they all go, in order, through the one rewriter and the one gzip stream, and each must
exit 0 before the next starts.

Memory stays bounded: a reader thread drains pg_dump's pipe into a small queue while the
consuming thread rewrites and compresses (ISA-L releases the GIL), so pg_dump, the server and
the compressor run side by side on separate cores. The gzip trailer is only produced after
pg_dump has exited 0 and its completion marker was seen, so a storage backend that commits on
the last chunk never commits a failed dump.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from isal import isal_zlib

from dbbackup.core import ports, seek_index
from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import BackupFailed
from dbbackup.pg.process import drain_lines, stop_group
from dbbackup.redact import one_line

# pg_dump writes the settings an entry needs before its header, when they change.
_SETTING_LINE = re.compile(rb"SET (?:default_tablespace|default_table_access_method) = [^\n]*;\n")
READ_SIZE = 1 << 20
OUT_SIZE = 1 << 20
QUEUE_DEPTH = 8
F_SETPIPE_SZ = 1031

Progress = Callable[[int, int], None]


def _entry_start(data: bytes, at: int, floor: int) -> int:
    """Where the entry whose header line starts at ``at`` (or whatever comes next, for ``at`` =
    the end of ``data``) begins: before the header's first ``--`` line and before the SET lines
    (``default_tablespace``, ``default_table_access_method``) and blank lines pg_dump writes in
    front of it, never before ``floor``. A member starting there holds what its first entry needs."""
    first, end = True, at
    while at > floor and data[at - 1 : at] == b"\n":
        start = max(data.rfind(b"\n", 0, at - 1) + 1, 0)
        if start < floor:
            break
        line = data[start:at]
        if not ((first and line == b"--\n") or line == b"\n" or _SETTING_LINE.fullmatch(line)):
            break
        first = False
        at = start
    while data[at : at + 1] == b"\n" and at < end:  # blank lines above it stay where they are
        at += 1
    return at


@dataclass
class DumpStats(ports.DumpStats):
    seconds: float = 0.0
    rewritten: dict[str, int] = field(default_factory=dict)


class DumpStream:
    """Iterate once to run pg_dump; ``stats`` is complete when iteration ends cleanly."""

    def __init__(
        self,
        sections: Sequence[tuple[str, Sequence[str] | bytes]],
        env: dict[str, str],
        rewriter: DumpRewriter,
        level: int = 1,
        secrets: Sequence[str] = (),
        progress: Progress | None = None,
        seekable: bool = True,
        sizes: Mapping[str, int] | None = None,
        part_size: int = seek_index.PART_SIZE,
    ) -> None:
        # Several programs (and our own SQL between them) may write one file, in order.
        self.sections = list(sections)
        self.env = env
        self.rewriter = rewriter
        self.level = level
        self.secrets = tuple(secrets)
        self.progress = progress
        # Seekable: a gzip member per section / large table (core.seek_index), and its index in
        # ``stats.index``; ``sizes`` (bytes per schema.table, estimated) lets a large table start
        # its own member. Off: one member, as before (the bench's reference).
        self.seekable = seekable
        self.sizes = dict(sizes or {})
        self.part_size = part_size  # a large table's rows: a new member (a part) every this many bytes
        self.stats = DumpStats()
        self._stderr: deque[str] = deque(maxlen=30)

    def __iter__(self) -> Generator[bytes]:
        started = time.monotonic()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._comp = isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, 31)
        self._out = bytearray()
        self._sql_out = 0  # SQL bytes in the file, after rewriting (what gunzip gives back)
        self._planner = seek_index.Planner(self.sizes, part_size=self.part_size) if self.seekable else None
        self._held = b""  # trailing lines that may open the next entry (see _entry_start), kept back
        self._members: list[seek_index.Member] = []
        self._member_gz = self._member_raw = 0  # where the open member starts
        for label, what in self.sections:
            if isinstance(what, bytes):
                self._add(self.rewriter.feed(what))  # our own SQL between two programs' outputs
            else:
                yield from self._run(label, what)
        # Every program exited 0; only now may the file end (the gzip trailer commits storage).
        self._add(self.rewriter.finish())
        if self._held:
            self._compress(self._held)
            self._held = b""
        self._out += self._comp.flush()
        if self._planner is not None:
            self._close_member(self._planner.current())
        self.stats.sql_bytes = self._sql_out
        self.stats.rewritten = dict(self.rewriter.rewritten)
        self.stats.tables = {name: (rows, size) for name, (rows, size) in self.rewriter.tables.items()}
        final = self._emit(self._out, self._md5)
        self.stats.md5 = self._md5.hexdigest()
        self.stats.seconds = time.monotonic() - started
        if self._planner is not None and not seek_index.check_cover(
            self._members, self.stats.gz_bytes, self.stats.sql_bytes
        ):
            self.stats.index = seek_index.Index(tuple(self._members))
        yield final

    def _add(self, data: bytes) -> None:
        if self._planner is None:
            self._compress(data)
            return
        if self._held:
            data, self._held = self._held + data, b""
        start = self._sql_out  # the raw offset of data[0]
        pos = 0
        for offset, line in self.rewriter.marks:
            toc = seek_index.parse_toc(line)
            at = offset - start
            if toc is None or at < pos or at > len(data):
                continue
            at = _entry_start(data, at, pos)  # the header's comment block and the SET lines before it
            closed = self._planner.cut_before(toc, start + at)
            if closed is not None:
                self._cut(data, pos, at, closed)
                pos = at
        self.rewriter.marks.clear()
        # Inside a large table's rows: a new part may start at the last row boundary (no entry
        # header can follow it in this chunk: the COPY data goes on past it).
        row_break = self.rewriter.row_break - start
        copy_line = self.rewriter.copy_line
        # The index stores the COPY line as text and a restore sends it back encoded as UTF-8: a
        # line that decodes as UTF-8 comes back as the very bytes pg_dump wrote, whatever the
        # dump's encoding. One that does not (a LATIN1 "Ü") gets no parts, nor (Planner.split) a
        # COPY of a table whose header was not read.
        if pos < row_break <= len(data) and (text := _utf8(copy_line)):
            closed = self._planner.split(start + row_break, text)
            if closed is not None:
                self._cut(data, pos, row_break, closed)
                pos = row_break
        # What may open the next entry (its SET lines, blank lines, the header's "--") waits for
        # the next chunk, which may hold the header: the member then starts with them.
        held = _entry_start(data, len(data), pos)
        rest, self._held = data[pos:held], data[held:]
        self._compress(rest)

    def _cut(self, data: bytes, pos: int, at: int, closed: seek_index.Closed) -> None:
        """End the open member with ``data[pos:at]`` and record it; the next byte starts a new one."""
        self._compress(data[pos:at])
        self._out += self._comp.flush()
        self._close_member(closed)
        self._comp = isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, 31)

    def _compress(self, data: bytes) -> None:
        if data:
            self._sql_out += len(data)
            self._out += self._comp.compress(data)

    def _close_member(self, closed: seek_index.Closed) -> None:
        """Record the member just finished (its gzip trailer is in ``_out``)."""
        gz_end = self.stats.gz_bytes + len(self._out)
        self._members.append(
            seek_index.Member(
                self._member_gz,
                gz_end - self._member_gz,
                self._member_raw,
                self._sql_out - self._member_raw,
                closed.section,
                closed.tables,
                closed.entries,
                closed.resume,
            )
        )
        self._member_gz, self._member_raw = gz_end, self._sql_out

    def _run(self, label: str, argv: Sequence[str]) -> Iterator[bytes]:
        """One program's stdout into the stream; raises BackupFailed unless it exits 0."""
        self._stderr.clear()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackupFailed(f"cannot start {label}: {exc.strerror or exc}") from None
        assert proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, READ_SIZE)
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_DEPTH)
        stop = threading.Event()
        err_thread = threading.Thread(target=drain_lines, args=(proc.stderr, self._stderr, self.secrets), daemon=True)
        reader = threading.Thread(target=self._read, args=(proc.stdout, chunks, stop), daemon=True)
        err_thread.start()
        reader.start()
        try:
            while True:
                item = chunks.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise BackupFailed(f"reading {label}'s output failed: {item}")
                self._add(self.rewriter.feed(item))
                if len(self._out) >= OUT_SIZE:
                    yield self._emit(self._out, self._md5)
                    self._out = bytearray()
            rc = proc.wait()
            err_thread.join(timeout=10)
            if rc != 0:
                raise BackupFailed(self._failure(rc, label))
        finally:
            stop.set()
            stop_group(proc)
            with contextlib.suppress(queue.Empty):
                while True:  # unblock the reader if it waits on a full queue
                    chunks.get_nowait()
            reader.join(timeout=10)
            proc.stdout.close()
            proc.stderr.close()

    def _emit(self, out: bytearray, md5: hashlib._Hash) -> bytes:
        chunk = bytes(out)
        md5.update(chunk)
        self.stats.gz_bytes += len(chunk)
        if self.progress:
            self.progress(self.rewriter.sql_bytes, self.stats.gz_bytes)
        return chunk

    @staticmethod
    def _read(pipe: IO[bytes], chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
        fd = pipe.fileno()
        try:
            while not stop.is_set():
                block = os.read(fd, READ_SIZE)
                if not block:
                    break
                while not stop.is_set():
                    try:
                        chunks.put(block, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            item = None
        except OSError as exc:
            item = exc
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _failure(self, rc: int, label: str = "pg_dump") -> str:
        errors = [ln for ln in self._stderr if "error" in ln.lower() or "fatal" in ln.lower()]
        detail = (errors or list(self._stderr) or [""])[0]
        detail = detail.removeprefix("pg_dump: ").removeprefix("pg_dumpall: ").removeprefix("error: ")
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        return one_line(f"{label} {how}" + (f": {detail}" if detail else ""))


def _utf8(line: bytes) -> str:
    """``line`` as text, "" when it is not UTF-8."""
    try:
        return line.decode()
    except UnicodeDecodeError:
        return ""
