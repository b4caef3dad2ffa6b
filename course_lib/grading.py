"""nbgrader support: a kernel client that waits for messages in short slices.

Seen with nbgrader 0.9.6: in about one autograde run in five, execution sat idle for the whole
per-cell timeout after notebook 02's ``interact`` cell, then went on without an error. nbclient
waits for a cell's reply with one ``socket.poll(timeout)`` on jupyter_client's asyncio channel; a
ZeroMQ socket signals new messages through an edge-triggered file descriptor, so a wakeup that
is missed leaves the message unread until the poll times out. Polling in slices of
``POLL_SLICE`` seconds asks the socket again each time, so such a message is read at the next
slice. ``sliced_polling_config()`` installs this client: nbgrader_config.py merges it, and
``build-notebooks --execute`` gives it to nbclient (the same wait once sat out a plain nbclient run of
notebook 06 for its whole 900 s timeout).
"""
from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import Type
from traitlets.config import Config

POLL_SLICE = 1.0   # seconds


class SlicedPollingChannel(AsyncZMQSocketChannel):
    async def get_msg(self, timeout: float | None = None) -> dict:
        """The next message, waiting at most ``timeout`` seconds (forever when None), polling in slices."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL_SLICE if deadline is None else max(0.0, min(POLL_SLICE, deadline - time.monotonic()))
            if await self.socket.poll(int(wait * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SlicedPollingKernelClient(AsyncKernelClient):
    shell_channel_class = Type(SlicedPollingChannel)
    iopub_channel_class = Type(SlicedPollingChannel)
    control_channel_class = Type(SlicedPollingChannel)


def sliced_polling_config() -> Config:
    """Configuration under which an AsyncKernelManager (nbclient's, nbgrader's) hands out SlicedPollingKernelClient."""
    config = Config()
    config.AsyncKernelManager.client_class = f"{__name__}.SlicedPollingKernelClient"
    return config
