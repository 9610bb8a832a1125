"""Exceptions that entry points turn into one-line messages and exit codes."""


class UserError(Exception):
    """A mistake the user can fix (bad setting, bad file); the message names it and the fix."""

    exit_code = 2


class TrainingDiverged(UserError):
    """The training loss stopped being a finite number; the weights are not worth saving."""

    exit_code = 3

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
