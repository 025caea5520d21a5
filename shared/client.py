"""A non-blocking ZeroMQ client for an Animus3D worker (used by the CLI and the Blender add-on).

Nothing here blocks except ``wait_for``: the add-on calls ``poll`` from a timer, the CLI in a
loop. ``poll`` also sends heartbeats when due and reports a worker that stopped answering as one
local ``Error(code="unreachable")``.

Ownership: every request carries the client's ``token``, and the worker lets only that token (or,
with CURVE, that key) see, attach to and cancel its jobs. Unless ``token=`` is given, the token is
this OS user's, kept in ``$XDG_CONFIG_HOME/animus3d/client-token`` (mode 0600, made on first use),
so a restarted program (Blender, the CLI) re-attaches with nothing but the job id.

Worker restarts: WELCOME and HEARTBEAT carry the worker's instance id. When it changes, ``poll``
reports one local ``Error(code="worker_restarted")`` (no job id) and re-attaches every job this
client is following, so each gets its outcome (a job that was running is ``worker_restarted``).

    client = WorkerClient("tcp://127.0.0.1:5555")
    client.connect()
    job = client.submit(splat, "the character waves")
    while True:
        for msg in client.poll():
            ...
"""

from __future__ import annotations

import collections
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import zmq

from .protocol import (PROTOCOL_VERSION, Accepted, Attach, Attached, Cancel, Cancelled, Error, Heartbeat, Hello, Limits,
                       ProtocolError, Result, Status, Submit, Welcome, decode, encode)
from .splat import GaussianSplat


def user_token() -> str:
    """This OS user's client token (made once, mode 0600); a random one if it cannot be stored."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "animus3d"
    path = base / "client-token"
    try:
        token = path.read_text().strip()
        if 16 <= len(token) <= 128:
            return token
    except OSError:
        pass
    token = secrets.token_urlsafe(24)
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
    except OSError:
        pass
    return token


class ClientError(RuntimeError):
    """The client cannot do what was asked (not connected, send queue full, …)."""


class WorkerUnreachable(ClientError):
    """The worker did not answer within the client's timeout."""


class WorkerClient:
    """A DEALER socket to one worker. Not thread-safe: use it from one thread."""

    def __init__(
        self,
        address: str,
        *,
        curve_server_public: bytes | None = None,
        curve_client_public: bytes | None = None,
        curve_client_secret: bytes | None = None,
        heartbeat_interval_s: float = 2.0,
        timeout_s: float = 10.0,
        client_name: str = "animus3d-cli",
        limits: Limits | None = None,
        context: zmq.Context | None = None,
        token: str | None = None,
    ) -> None:
        curve = (curve_server_public, curve_client_public, curve_client_secret)
        if any(k is not None for k in curve) and not all(k is not None for k in curve):
            raise ClientError("CURVE needs the server public key and the client public and secret keys")
        self.address = address
        self.heartbeat_interval_s = heartbeat_interval_s
        self.timeout_s = timeout_s
        self.client_name = client_name
        self.limits = limits or Limits()
        self._curve = curve if all(k is not None for k in curve) else None
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._connected_at: float | None = None
        self._last_received: float | None = None
        self._last_sent: float = 0.0
        self._lost_reported = False
        self._backlog: collections.deque[Any] = collections.deque()
        self.welcome: Welcome | None = None
        self.token = token or user_token()
        self.instance_id: str | None = None  # the worker's, from WELCOME / HEARTBEAT
        self.following: set[str] = set()  # jobs accepted or attached here whose outcome has not arrived
        self._unanswered_attach: dict[str, float] = {}  # job id -> when ATTACH was last sent, until ATTACHED

    # ---- state ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """WELCOME received and the worker spoke within ``timeout_s``."""
        return self.welcome is not None and not self._silent_too_long(time.monotonic())

    @property
    def lost(self) -> bool:
        """The worker has said nothing for ``timeout_s`` since connecting (or since it last spoke)."""
        return self._connected_at is not None and self._silent_too_long(time.monotonic())

    def _silent_too_long(self, now: float) -> bool:
        if self._connected_at is None:
            return True
        last = self._last_received if self._last_received is not None else self._connected_at
        return now - last > self.timeout_s

    # ---- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Opens the socket and sends HELLO. Never blocks; the WELCOME arrives through ``poll``."""
        if self._socket is not None:
            raise ClientError("already connected; close() first")
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = 100
        if self._curve is not None:
            server_public, client_public, client_secret = self._curve
            sock.curve_serverkey = server_public
            sock.curve_publickey = client_public
            sock.curve_secretkey = client_secret
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise ClientError(f"cannot connect to {self.address}: {exc}") from None
        self._socket = sock
        self._connected_at = time.monotonic()
        self._last_received = None
        self._lost_reported = False
        self.welcome = None
        self._send(Hello(protocol_version=PROTOCOL_VERSION, client_name=self.client_name))

    def close(self) -> None:
        """Closes the socket at once (linger 0). Jobs on the worker keep running."""
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        self._connected_at = None

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests -----------------------------------------------------------------------------
    def submit(self, splat: GaussianSplat, prompt: str, *, static_prompt: str | None = None,
               settings: dict | None = None, seed: int = 0) -> None:
        """Sends SUBMIT; ACCEPTED (with the job id) or ERROR arrives through ``poll``."""
        self._send(Submit(splat=splat, prompt=prompt, static_prompt=static_prompt or "",
                          settings=dict(settings or {}), seed=int(seed), token=self.token))

    def cancel(self, job_id: str) -> None:
        self._send(Cancel(job_id=job_id, token=self.token))

    def attach(self, job_id: str) -> None:
        """Makes this client the one the job's progress and result go to (same token or key only)."""
        self.following.add(job_id)
        self._send_attach(job_id)

    def _send_attach(self, job_id: str) -> None:
        self._unanswered_attach[job_id] = time.monotonic()
        self._send(Attach(job_id=job_id, token=self.token))

    def request_status(self) -> None:
        """STATUS_REPLY lists this client's own jobs (every job for an admin token or key)."""
        self._send(Status(token=self.token))

    def send_raw(self, frames: list[bytes]) -> None:
        """Sends frames as they are (for tests of the worker's input validation)."""
        self._require_socket().send_multipart(frames, zmq.NOBLOCK)
        self._last_sent = time.monotonic()

    def _require_socket(self) -> zmq.Socket:
        if self._socket is None:
            raise ClientError("not connected: call connect() first")
        return self._socket

    def _send(self, message: Any) -> None:
        sock = self._require_socket()
        try:
            sock.send_multipart(encode(message), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ClientError(f"send queue to {self.address} is full (is the worker running?)") from None
        self._last_sent = time.monotonic()

    # ---- receiving ----------------------------------------------------------------------------
    def poll(self, max_messages: int = 16, max_time_s: float = 0.005) -> list[Any]:
        """Returns up to ``max_messages`` messages received so far, spending at most about ``max_time_s``.

        Never blocks. Sends a HEARTBEAT when one is due. Malformed replies from the worker become
        local ``Error`` messages; a silent worker becomes one ``Error(code="unreachable")``.
        """
        sock = self._require_socket()
        out: list[Any] = []
        while self._backlog and len(out) < max_messages:
            out.append(self._backlog.popleft())
        start = time.monotonic()
        while len(out) < max_messages:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)  # arrays decode zero-copy
            except zmq.Again:
                break
            now = time.monotonic()
            self._last_received = now
            self._lost_reported = False
            try:
                message = decode(frames, self.limits)
            except ProtocolError as exc:
                out.append(Error(code=exc.code, message=f"bad reply from worker: {exc.message}"))
            else:
                if isinstance(message, Welcome):
                    self.welcome = message
                if isinstance(message, (Welcome, Heartbeat)) and message.instance_id:
                    out.extend(self._check_instance(message.instance_id))
                self._track(message)
                if not isinstance(message, Heartbeat):
                    out.append(message)
            if now - start >= max_time_s:
                break
        now = time.monotonic()
        self._resend_attaches(now)
        if now - self._last_sent >= self.heartbeat_interval_s:
            try:
                self._send(Heartbeat())
            except ClientError:
                pass  # the queue is full because the worker is gone; `lost` will say so
        if self._silent_too_long(now) and not self._lost_reported:
            self._lost_reported = True
            out.append(Error(code="unreachable",
                             message=f"worker at {self.address} did not answer within {self.timeout_s:g} s"))
        return out

    def _check_instance(self, instance_id: str) -> list[Any]:
        previous, self.instance_id = self.instance_id, instance_id
        if previous is None or previous == instance_id:
            return []
        for job_id in sorted(self.following):
            self._unanswered_attach[job_id] = 0.0  # sent by _resend_attaches, again until answered
        self._resend_attaches(time.monotonic())
        return [Error(code="worker_restarted", message=f"the worker at {self.address} restarted; "
                                                       f"re-attached {len(self.following)} job(s)")]

    def _resend_attaches(self, now: float) -> None:
        """Sends ATTACH again for jobs whose ATTACH got no answer (a send queue full while the worker
        was away drops it), at most once per heartbeat interval (the worker takes repeats)."""
        for job_id, sent_at in list(self._unanswered_attach.items()):
            if job_id not in self.following:
                del self._unanswered_attach[job_id]
            elif now - sent_at >= max(self.heartbeat_interval_s, 0.25):
                try:
                    self._send_attach(job_id)
                except ClientError:
                    return

    def _track(self, message: Any) -> None:
        if isinstance(message, Accepted):
            self.following.add(message.job_id)
        elif isinstance(message, Attached):
            self._unanswered_attach.pop(message.job_id, None)
        elif isinstance(message, (Result, Cancelled)) or (isinstance(message, Error) and message.job_id):
            self.following.discard(message.job_id)
            self._unanswered_attach.pop(message.job_id, None)

    def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float) -> Any:
        """Blocks until a message satisfies ``predicate`` (CLI and tests only).

        Messages that do not match stay queued for the next ``poll``. Raises ``WorkerUnreachable``
        if the worker goes silent and ``TimeoutError`` after ``timeout_s``.
        """
        sock = self._require_socket()
        deadline = time.monotonic() + timeout_s
        skipped: list[Any] = []
        try:
            while True:
                batch = self.poll(max_messages=64, max_time_s=0.05)
                for i, message in enumerate(batch):
                    if predicate(message):
                        skipped.extend(batch[i + 1:])
                        return message
                    if isinstance(message, Error) and message.code == "unreachable":
                        skipped.extend(batch[i + 1:])
                        raise WorkerUnreachable(message.message)
                    skipped.append(message)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching reply from {self.address} within {timeout_s:g} s")
                if not self._backlog:  # wait on the socket only once the queued messages are read
                    sock.poll(int(min(left, self.heartbeat_interval_s, 0.2) * 1000) + 1, zmq.POLLIN)
        finally:
            self._backlog.extendleft(reversed(skipped))
