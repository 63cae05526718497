"""Error kinds the CLI maps to exit codes: UserError -> 2 (bad input or config), anything else -> 1."""


class UserError(Exception):
    """Bad input or config. The message is one line that names the file, line and field when known."""
