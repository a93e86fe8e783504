"""Errors a user can fix.  The CLI prints their message (no traceback) and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a config, a path, an argument.  The message names the problem and the fix."""


class ConfigError(UserError):
    def __init__(self, message: str, key: str | None = None, file: str | None = None) -> None:
        self.message, self.key, self.file = message, key, file
        super().__init__(f"{file}: {message}" if file else message)

    def in_file(self, file: str) -> "ConfigError":
        return ConfigError(self.message, self.key, file) if self.file is None else self


class RunFinished(Exception):
    """The run to resume has finished: nothing is done (the CLI says so and exits 0)."""


class Diverged(Exception):
    """Training stopped being finite (a loss, or the weights about to be saved).  The CLI prints the message and
    exits with code 3; the run's last good checkpoint and model.pt are never overwritten by such weights."""

    exit_code = 3
