"""Exceptions that entry points turn into one-line messages and exit codes."""


class UserError(Exception):
    """A mistake the user can fix (bad setting, bad file); the message names it and the fix."""

    exit_code = 2
