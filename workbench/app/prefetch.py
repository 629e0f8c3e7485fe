"""Overlapping the stages of a folder run: the next image is decoded (and its red-cell ruler measured) in a worker
thread while the models run on the current one.

Decoding a JPEG and measuring its red cells are numpy / OpenCV / Pillow work that releases the GIL, and the models
never fill both cores all the time (Python glue, NMS, cropping), so on a 2-core lab PC a folder goes faster than
image after image. Results still come out in input order: the worker only ever prepares the one image after the
current, and a run that stops (cancel, an error, the caller breaking off) drops what was prepared ahead.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prepared_ahead(items: Sequence[T], prepare: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """(item, prepare(item)) in order; prepare(items[i + 1]) runs in a worker thread while the caller handles item
    i. `prepare` should not raise (an exception is raised again here, for the item it belongs to)."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending: Future | None = pool.submit(prepare, items[0])
        try:
            for index, item in enumerate(items):
                ready = pending.result()
                pending = pool.submit(prepare, items[index + 1]) if index + 1 < len(items) else None
                yield item, ready
        finally:
            if pending is not None:
                pending.cancel()   # not started yet: never runs; running: the pool's exit waits for it
