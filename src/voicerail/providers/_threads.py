"""Stream items from a blocking producer thread into an async iterator.

The embedded engines (piper, espeak-ng) are blocking C code. Each request runs its
producer in a worker thread that hands items to the event loop as they are made,
so the consumer gets the first audio before the whole text is synthesized.

Rules kept here:

1. The producer is told to stop through a :class:`threading.Event` that it checks
   between items; the async side sets it when the consumer stops early (``aclose()``
   or :class:`asyncio.CancelledError`). Work already started in C finishes; nothing
   after the next item is done.
2. A producer's exception is re-raised in the consumer, unchanged, after the items
   produced before it.
3. Once stopped, the producer never touches the event loop again (the loop may be
   closed by then).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")

# A producer receives ``emit`` (hand over one item) and the stop flag.
Producer = Callable[[Callable[[T], None], threading.Event], None]


class _End:
    """Marks the end of the producer's items."""


class _Failed:
    """Carries the producer's exception to the consumer."""

    def __init__(self, error: Exception) -> None:
        self.error = error


async def iterate_in_thread(
    produce: Producer[T], *, thread_name: str, executor: Executor | None = None
) -> AsyncGenerator[T, None]:
    """Run ``produce`` in a thread and yield what it emits, in order.

    Args:
        produce: blocking function called as ``produce(emit, stop)``; it calls
            ``emit(item)`` per item and should return soon after ``stop`` is set.
        thread_name: name of the worker thread (a new daemon thread per call).
        executor: run in this executor instead of a new thread; a one-worker
            executor serializes producers that share process-global state.

    Yields:
        The items, as soon as each is emitted.

    Raises:
        Exception: whatever ``produce`` raised.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T | _End | _Failed] = asyncio.Queue()
    stop = threading.Event()

    def post(item: T | _End | _Failed) -> None:
        if stop.is_set():
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def run() -> None:
        if stop.is_set():  # cancelled while waiting for the executor
            return
        try:
            produce(post, stop)
        except Exception as error:  # thread boundary: handed to the consumer, which raises it
            post(_Failed(error))
        else:
            post(_End())

    if executor is None:
        threading.Thread(target=run, name=thread_name, daemon=True).start()
    else:
        executor.submit(run)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
