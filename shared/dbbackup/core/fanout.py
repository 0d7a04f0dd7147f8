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

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from dbbackup.core.ports import StoredFile

QUEUE_DEPTH = 4
_END: Final = object()

Writer = Callable[[Iterator[bytes]], StoredFile]


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
            raise item.error
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
        except Exception as exc:
            results[name] = exc
        finally:
            done[name].set()

    threads = [
        threading.Thread(target=run, args=(name, write), name=f"dbbackup-put-{name}", daemon=True)
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

    try:
        for chunk in source:
            offer(chunk)
    except BaseException as exc:
        offer(_Failed(exc))
        for thread in threads:
            thread.join()
        raise
    offer(_END)
    for thread in threads:
        thread.join()
    return {name: results[name] for name in writers}


def _watched(source: Iterator[bytes], error: list[BaseException]) -> Iterator[bytes]:
    """``source``, noting what it raised: the dump's failure, not the target's."""
    try:
        yield from source
    except BaseException as exc:
        error.append(exc)
        raise
