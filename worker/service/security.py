"""Who may bind where, and CURVE keys: loopback binds are open, anything else needs keys.

Key layout (what ``animus3d keygen DIR`` writes, in ``zmq.auth`` certificate format)::

    DIR/server.key              server public key (give it to clients)
    DIR/server.key_secret       server secret key (stays on the worker)
    DIR/authorized_clients/*.key  public keys of the clients the worker accepts
    DIR/clients/NAME.key, NAME.key_secret   a client pair (copy both to that client)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from animus3d_shared import endpoints

SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized_clients"
CLIENTS_DIR = "clients"


class SecurityError(ValueError):
    """A bind or key setup that the worker refuses (one line, shown to the operator)."""


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on 127.0.0.0/8, ::1 or localhost."""
    try:
        return endpoints.is_loopback_endpoint(endpoint)
    except ValueError as exc:
        raise SecurityError(str(exc)) from None


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: Path


def load_server_keys(keys_dir: str | Path) -> ServerKeys:
    """Reads DIR/server.key_secret and checks DIR/authorized_clients holds at least one key."""
    keys_dir = Path(keys_dir)
    secret_file = keys_dir / f"{SERVER_NAME}.key_secret"
    authorized = keys_dir / AUTHORIZED_DIR
    if not secret_file.is_file():
        raise SecurityError(f"{secret_file} not found (make keys with `animus3d keygen {keys_dir}`)")
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise SecurityError(f"no client public keys in {authorized} (add one with `animus3d keygen {keys_dir} --client NAME`)")
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read server key {secret_file}: {exc}") from None
    if not secret:
        raise SecurityError(f"{secret_file} holds no secret key")
    return ServerKeys(public=public, secret=secret, authorized_dir=authorized)


def require_keys_for(endpoint: str, keys_dir: str | Path | None) -> ServerKeys | None:
    """The keys to use for ``endpoint``: None on loopback without keys; SecurityError if keys are needed."""
    if keys_dir is not None:
        return load_server_keys(keys_dir)
    if is_loopback_endpoint(endpoint):
        return None
    raise SecurityError(
        f"refusing to bind {endpoint} without authentication: non-loopback binds need CURVE keys "
        "(run `animus3d keygen DIR`, then pass --keys DIR)"
    )


def load_client_keys(client_key_file: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of a client from its ``NAME.key_secret`` file."""
    path = Path(client_key_file)
    if not path.name.endswith("_secret") and Path(str(path) + "_secret").is_file():
        path = Path(str(path) + "_secret")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read client key {path}: {exc}") from None
    if not secret:
        raise SecurityError(f"{path} holds no secret key (pass the NAME.key_secret file)")
    return public, secret


def load_public_key(key_file: str | Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(Path(key_file))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read public key {key_file}: {exc}") from None
    return public


def generate_keys(keys_dir: str | Path, client_name: str | None = "client") -> dict[str, Path]:
    """Creates the server pair (unless present) and, if ``client_name``, a client pair.

    The client's public key is copied into ``authorized_clients/``. Returns the paths written.
    """
    keys_dir = Path(keys_dir)
    authorized = keys_dir / AUTHORIZED_DIR
    clients = keys_dir / CLIENTS_DIR
    for d in (keys_dir, authorized, clients):
        d.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    server_secret = keys_dir / f"{SERVER_NAME}.key_secret"
    if not server_secret.exists():
        zmq.auth.create_certificates(keys_dir, SERVER_NAME)
        server_secret.chmod(0o600)
    written["server_public"] = keys_dir / f"{SERVER_NAME}.key"
    written["server_secret"] = server_secret
    if client_name:
        if not client_name.replace("-", "").replace("_", "").isalnum():
            raise SecurityError(f"client name {client_name!r} may only use letters, digits, - and _")
        if (clients / f"{client_name}.key").exists():
            raise SecurityError(f"a client named {client_name!r} already exists in {clients}")
        public, secret = zmq.auth.create_certificates(clients, client_name)
        Path(secret).chmod(0o600)
        shutil.copy(public, authorized / f"{client_name}.key")
        written["client_public"] = Path(public)
        written["client_secret"] = Path(secret)
        written["authorized"] = authorized / f"{client_name}.key"
    return written


def apply_server_curve(socket: zmq.Socket, keys: ServerKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def start_authenticator(context: zmq.Context, keys: ServerKeys):
    """A ZAP authenticator thread that accepts only clients whose public key is authorised.

    Every refused handshake is logged (``event="auth refused"``) with the peer's address.
    """
    import logging

    from zmq.auth.thread import ThreadAuthenticator

    log = logging.getLogger("animus3d.service.auth")

    class LoggingAuthenticator(ThreadAuthenticator):
        _peer = ""

        async def handle_zap_message(self, msg):  # ZAP requests are handled one at a time
            self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
            self._mechanism = msg[5].decode("ascii", "replace") if len(msg) > 5 else "?"
            await super().handle_zap_message(msg)

        def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
            if status_code != b"200":
                log.warning("auth refused", extra={"peer": self._peer, "mechanism": self._mechanism,
                                                   "reason": status_text.decode("utf-8", "replace")})
            super()._send_zap_reply(request_id, status_code, status_text, user_id)

    auth = LoggingAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized_dir))
    return auth
