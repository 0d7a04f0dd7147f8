"""One stream written to several storage targets at once: no second dump, no temporary file.

Each target's ``put`` runs in a thread of its own and reads its chunks from a small queue; the
calling thread reads the dump once and hands every chunk to every target still writing. A full
queue blocks the caller, so the slowest target sets the pace (backpressure) and memory stays at
``QUEUE_DEPTH`` chunks per target whatever the size.

A target that fails is dropped and the others go on: each copy succeeds or fails on its own. When
the *source* fails (pg_dump died), every target's stream raises that same error, so no backend
commits a partial file, and the error is raised to the caller. With one target there is no
thread at all: ``put`` reads the source directly, exactly as before.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from dbbackup.core.ports import StoredFile

QUEUE_DEPTH = 4
JOIN_SECONDS = 60  # how long an interrupted run waits for a target to abort its upload
_END: Final = object()

Writer = Callable[[Iterator[bytes]], StoredFile]


class SourceFailed(Exception):
    """What a target's stream raises when the source failed (or the run was interrupted): an
    ordinary exception in that thread, whatever the source raised, so every backend aborts its
    write and no thread prints a traceback of its own; the caller gets the original."""


@dataclass
class _Failed:
    """Handed down a target's queue: the source raised ``error``."""

    error: BaseException


def _stream(inbox: queue.Queue[object]) -> Iterator[bytes]:
    while True:
        item = inbox.get()
        if item is _END:
            return
        if isinstance(item, _Failed):
            raise SourceFailed(str(item.error) or type(item.error).__name__)
        assert isinstance(item, bytes)
        yield item


def fan_out(source: Iterator[bytes], writers: Mapping[str, Writer]) -> dict[str, StoredFile | Exception]:
    """Write ``source`` through every writer; per target, what it stored or the error it raised.
    Raises what ``source`` raised (after every target has given up its write)."""
    if len(writers) == 1:
        [(name, write)] = writers.items()
        source_error: list[BaseException] = []
        try:
            return {name: write(_watched(source, source_error))}
        except Exception as exc:
            if source_error:
                raise source_error[0] from None
            return {name: exc}
    results: dict[str, StoredFile | Exception] = {}
    inboxes = {name: queue.Queue[object](QUEUE_DEPTH) for name in writers}
    done = {name: threading.Event() for name in writers}

    def run(name: str, write: Writer) -> None:
        try:
            results[name] = write(_stream(inboxes[name]))
        except BaseException as exc:  # never a traceback from this thread: the caller reports
            results[name] = exc if isinstance(exc, Exception) else SourceFailed(type(exc).__name__)
        finally:
            done[name].set()

    # Each thread runs in a copy of the caller's context, so its log lines keep their labels.
    threads = [
        threading.Thread(
            target=contextvars.copy_context().run, args=(run, name, write), name=f"dbbackup-put-{name}", daemon=True
        )
        for name, write in writers.items()
    ]
    for thread in threads:
        thread.start()

    def offer(item: object) -> None:
        """Give ``item`` to every target still writing; waits for the slowest (backpressure)."""
        for name, inbox in inboxes.items():
            while not done[name].is_set():
                try:
                    inbox.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    ended = False
    try:
        for chunk in source:
            if all(d.is_set() for d in done.values()):
                break  # every target has given up: stop reading the dump (the caller stops pg_dump)
            offer(chunk)
        else:
            offer(_END)
            ended = True
        for thread in threads:
            thread.join()
    except BaseException as exc:
        # The source failed or the run was interrupted: a target not yet told the stream ended
        # must not commit; wait (bounded) for every writer to finish or abort.
        if not ended:
            offer(_Failed(exc))
        for thread in threads:
            thread.join(timeout=JOIN_SECONDS)
        raise
    return {name: results.get(name, SourceFailed("the upload did not finish")) for name in writers}


def _watched(source: Iterator[bytes], error: list[BaseException]) -> Iterator[bytes]:
    """``source``, noting what it raised: the dump's failure, not the target's."""
    try:
        yield from source
    except BaseException as exc:
        error.append(exc)
        raise
