"""The one exception type that reaches the user as a single line (exit status 2, no traceback)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: names the file, the field and what is allowed."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.field) if p)
        return f"{where}: {self.message}" if where else self.message


class UserErrors(UserError):
    """Several independent problems found at once (``check``): one line each."""

    def __init__(self, errors: list[UserError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
