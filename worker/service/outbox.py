"""Hand-off from worker threads to the socket thread.

ZeroMQ sockets are not thread-safe, so only the loop thread touches the ROUTER. Other threads
``post`` items on a thread-safe queue and poke an inproc PAIR socket so the loop's poller wakes.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any

import zmq

_counter = itertools.count()


class Outbox:
    """A queue plus a wake-up socket. Create it in the loop thread; ``post`` from any thread."""

    def __init__(self, context: zmq.Context) -> None:
        address = f"inproc://animus3d-outbox-{id(self)}-{next(_counter)}"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.wake_socket = context.socket(zmq.PAIR)  # read by the loop thread
        self.wake_socket.linger = 0
        self.wake_socket.bind(address)
        self._poke = context.socket(zmq.PAIR)  # written by posting threads, under the lock
        self._poke.linger = 0
        self._poke.sndhwm = 1
        self._poke.connect(address)
        self._lock = threading.Lock()

    def post(self, item: Any) -> None:
        """Queues ``item`` for the loop thread and wakes it. Safe from any thread."""
        self._queue.put(item)
        self.wake()

    def wake(self) -> None:
        with self._lock:
            try:
                self._poke.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # a wake-up is already pending
            except zmq.ZMQError:
                pass  # closed during shutdown

    def drain(self) -> list[Any]:
        """Loop thread: clears pending wake-ups and returns everything posted so far."""
        while True:
            try:
                self.wake_socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        with self._lock:
            self._poke.close(0)
        self.wake_socket.close(0)
