"""`animus3d keygen DIR [--client NAME]`: CURVE key pairs for a worker and one of its clients."""

from __future__ import annotations

import argparse

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="key directory (created if missing)")
    parser.add_argument("--client", default="client", metavar="NAME",
                        help="name of the client pair to make and authorise (default 'client')")


def run(args: argparse.Namespace) -> int:
    from ..service.security import SecurityError, generate_keys

    try:
        written = generate_keys(args.dir, args.client)
    except (SecurityError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"server public key: {written['server_public']}  (clients pass it as --server-key)")
    print(f"server secret key: {written['server_secret']}  (stays on the worker: --keys {args.dir})")
    if "client_secret" in written:
        print(f"client key pair:   {written['client_secret']}  (the client passes it as --client-key)")
        print(f"authorised:        {written['authorized']}")
    return 0
