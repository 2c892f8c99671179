"""User-facing errors. The CLI turns each into one line and exit code 2; nothing else catches them."""
from __future__ import annotations


class OptsearchError(Exception):
    """Base of every error caused by user input (a program, a config, a run name)."""


class ProgramError(OptsearchError):
    """A program text that cannot be accepted: names the file, the line and the cause."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<program>"
        if self.line:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"

    def at(self, path: str) -> "ProgramError":
        """The same error, attributed to `path` (when it was raised before the file was known)."""
        return ProgramError(self.message, path, self.line)
