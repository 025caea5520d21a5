"""One module per `animus3d` subcommand: `add_arguments(parser)` and `run(args) -> int`."""


class CommandError(Exception):
    """An expected failure (bad input, unreachable worker…): printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
