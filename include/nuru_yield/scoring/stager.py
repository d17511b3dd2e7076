"""The background stager of a scoring shard: the binary COPY of one batch into the database
overlaps the scoring of the next."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa


class BackgroundStage:
    """Runs ``stage(batches)`` in a thread fed through a small queue. ``finish`` commits (its
    row count); ``abort`` makes the load fail, so that its transaction rolls back. An error
    of the load is raised in the caller's thread, by the next ``put`` or by ``finish``."""

    _END = object()
    _ABORT = object()

    def __init__(self, stage: Callable[[Iterable[pa.RecordBatch]], int]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(stage,), name="stage")
        self._thread.start()

    def _run(self, stage: Callable[[Iterable[pa.RecordBatch]], int]) -> None:
        try:
            self._result["rows"] = stage(self._batches())
        except BaseException as error:  # handed to the main thread in `finish`
            self._result["error"] = error

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if item is self._ABORT:
                raise RuntimeError("scoring failed: load aborted")
            yield item

    def _put(self, item: Any) -> None:
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.5)
                return
        self._raise()

    def _raise(self) -> None:
        self._thread.join()
        if "error" in self._result:
            raise self._result["error"]

    def put(self, batch: pa.RecordBatch) -> None:
        self._put(batch)

    def finish(self) -> int:
        self._put(self._END)
        self._raise()
        return self._result["rows"]

    def abort(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._put(self._ABORT)
        self._thread.join()
