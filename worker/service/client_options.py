"""Command-line options for reaching a worker (`status`, `animate --connect`): address and CURVE keys."""

from __future__ import annotations

import argparse
from pathlib import Path

from .security import CLIENTS_DIR, SERVER_NAME, SecurityError, load_client_keys, load_public_key


def add_connection_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--connect", metavar="ADDR", required=required,
                        help="worker endpoint, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--server-key", metavar="FILE", help="the worker's public key (server.key)")
    parser.add_argument("--client-key", metavar="FILE", help="this client's secret key file (NAME.key_secret)")
    parser.add_argument("--keys", metavar="DIR", dest="client_keys_dir",
                        help="a keygen directory: uses DIR/server.key and DIR/clients/client.key_secret")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds without a word from the worker before giving up (default 10)")


def client_from_args(args: argparse.Namespace, client_name: str = "animus3d-cli"):
    """A (not yet connected) client for the options above. Raises SecurityError for bad key files."""
    from animus3d_shared.client import WorkerClient

    server_key, client_key = args.server_key, args.client_key
    if args.client_keys_dir:
        keys_dir = Path(args.client_keys_dir)
        server_key = server_key or keys_dir / f"{SERVER_NAME}.key"
        client_key = client_key or keys_dir / CLIENTS_DIR / "client.key_secret"
    if bool(server_key) != bool(client_key):
        raise SecurityError("CURVE needs both --server-key and --client-key (or --keys DIR)")
    curve = {}
    if server_key:
        public, secret = load_client_keys(client_key)
        curve = dict(curve_server_public=load_public_key(server_key), curve_client_public=public,
                     curve_client_secret=secret)
    return WorkerClient(args.connect, timeout_s=args.timeout, client_name=client_name, **curve)
