"""The one exception type that reaches the user as a single line (exit status 2, no traceback)."""

from __future__ import annotations

MAX_LINE = 1000  # an error line never echoes a huge value whole (values themselves are cut to ~80)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class UserError(Exception):
    """Bad input from the user: names the file, the field and what is allowed."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(shorten(p, 200) for p in (self.source, self.field) if p)
        text = f"{where}: {self.message}" if where else self.message
        return shorten(" ".join(text.splitlines()), MAX_LINE)


class UserErrors(UserError):
    """Several independent problems found at once (``check``): one line each."""

    def __init__(self, errors: list[UserError]) -> None:
        self.errors = errors
        super().__init__("several problems")

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
