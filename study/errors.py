"""Errors the CLI turns into exit codes: bad input exits 2, a failure exits 1."""

from __future__ import annotations


class StudyError(Exception):
    """Something failed that is not the user's input (a scheduler refused, a run failed): exit 1."""

    exit_code = 1


class InputError(StudyError):
    """Bad input: the message names the file, line, column and key (or the argument): exit 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ):
        self.file, self.line, self.col, self.key, self.hint = file, line, col, key, hint
        where = ""
        if file:
            where = file
            if line is not None:
                where += f":{line}"
                if col is not None:
                    where += f":{col}"
            where += ": "
        text = where + (f"{key}: " if key else "") + message
        if hint:
            text += f" ({hint})"
        super().__init__(text)
