"""The router's tests run on virtual time (``voicerail.testing.clock``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from voicerail.testing.clock import VirtualTimeLoop

#: Modules whose tests run on a VirtualTimeLoop; the others on the default loop.
VIRTUAL_TIME_MODULES = {"test_router.py"}


def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in VIRTUAL_TIME_MODULES:
        return {"virtual_time": VirtualTimeLoop}
    return {"default": asyncio.new_event_loop}
