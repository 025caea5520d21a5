"""Lab subcommands of the `animus3d` CLI (`evaluate`, `train-prior`, `check-prior`, `bench`).

Same contract as ``animus3d_worker.commands``: ``add_arguments(parser)`` and ``run(args) -> int``.
"""
