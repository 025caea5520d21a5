"""CURVE keys for an authenticated worker, read from the files named in the add-on preferences.

``animus3d keygen DIR --client NAME`` writes ``DIR/server.key`` (the worker's public key) and
``DIR/clients/NAME.key_secret`` (this client's key pair); the preferences name those two files.
Both empty: no encryption (a loopback worker). One of them empty, or a file that cannot be read, is
a :class:`KeyFileError` with a message for the artist.
"""

from __future__ import annotations

import os

Curve = tuple[bytes, bytes, bytes]  # (server public, client public, client secret)


class KeyFileError(ValueError):
    """A key file named in the preferences is missing or is not a ZeroMQ CURVE certificate."""


def _load(path: str, want_secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise KeyFileError(f"CURVE key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path} is not a CURVE key file: {exc}") from None
    if want_secret and not secret:
        raise KeyFileError(f"{path} holds no secret key: choose the client's NAME.key_secret file")
    return public, secret


def curve_keys(server_key_file: str, client_key_file: str) -> Curve | None:
    """The keys a client connects with, or None when neither file is set."""
    server_key_file, client_key_file = server_key_file.strip(), client_key_file.strip()
    if not server_key_file and not client_key_file:
        return None
    if not server_key_file or not client_key_file:
        raise KeyFileError("CURVE needs both the worker's public key (server.key) and this client's "
                           "key pair (NAME.key_secret) in the add-on preferences")
    server_public, _ = _load(server_key_file, want_secret=False)
    client_public, client_secret = _load(client_key_file, want_secret=True)
    return server_public, client_public, client_secret


def from_preferences(prefs) -> Curve | None:
    return curve_keys(getattr(prefs, "server_key_file", ""), getattr(prefs, "client_key_file", ""))
