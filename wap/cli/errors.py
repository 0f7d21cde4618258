"""The error every `wap` subcommand raises for what the user can fix."""


class UserError(Exception):
    """An error the user can fix: printed as one line, without a traceback."""
