"""Errors that use cases raise; the HTTP layer maps each kind to a status and the contract's
``{message, status, detail, error_code}`` shape."""

from __future__ import annotations

from hookline.error_codes import ErrorCode


class HooklineError(Exception):
    status_code = 400
    error_code: str = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, detail: str = "", error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if error_code:
            self.error_code = error_code


class InvalidRequest(HooklineError):
    status_code = 400
    error_code = ErrorCode.INVALID_REQUEST


class Unauthorized(HooklineError):
    status_code = 401
    error_code = ErrorCode.UNAUTHORIZED


class NotFound(HooklineError):
    status_code = 404
    error_code = ErrorCode.NOT_FOUND


class Conflict(HooklineError):
    status_code = 409
    error_code = ErrorCode.CONFLICT


class PayloadTooLarge(HooklineError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE


class StorageError(Exception):
    """A database refusal, translated at the store's edge (``hookline.store.errors``) from
    the driver's exception, which stays its ``__cause__``. Not a client error: one that no
    use case handles is a bug (HTTP 500)."""


class ConstraintViolation(StorageError):
    """A constraint of the schema refused a write."""


class DuplicateKey(ConstraintViolation):
    """A primary key or unique index already holds the value (a concurrent insert won)."""


class MissingReference(ConstraintViolation):
    """A foreign key names a row that does not exist (deleted meanwhile)."""
