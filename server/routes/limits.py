"""Size limits beyond what the schema states: 422 naming the field path, like schema errors."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError


def limit_error(loc: list, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ["body", *loc], "msg": message, "type": "limit_exceeded"}])


def check_count(loc: list, count: int, limit: int, what: str) -> None:
    if count > limit:
        raise limit_error(loc, f"{count} {what}, at most {limit} allowed")
