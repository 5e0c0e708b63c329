"""Errors of the dspool API, as exceptions.

The server answers an error as {"error": {"code", "field", "message"}}; each
code is a class here, so callers catch what they can handle:

    try:
        client.submit(["python3", "train.py"], memory="4GB")
    except dspool.InvalidError as e:
        print(e.field, e.message)     # memory  ... is out of range: ...
"""

__all__ = [
    "DspoolError",
    "InvalidError",
    "NotFoundError",
    "ConflictError",
    "UnauthorizedError",
    "ForbiddenError",
    "TooLargeError",
    "UnavailableError",
    "InternalError",
    "UnreachableError",
    "WaitTimeout",
]


class DspoolError(Exception):
    """An error of the dspool API: its code (invalid, not_found, ...), the
    request field it is about ("" when none), and a message that says what
    happened and what to do."""

    code = "internal"

    def __init__(self, message, field="", code=None, status=None):
        super().__init__(message)
        self.message = message
        self.field = field or ""
        if code is not None:
            self.code = code
        self.status = status

    def __str__(self):
        if self.field:
            return "%s: %s" % (self.field, self.message)
        return self.message


class InvalidError(DspoolError, ValueError):
    """The request was wrong: field names what (HTTP 400)."""

    code = "invalid"


class NotFoundError(DspoolError, LookupError):
    """No such job, secret, ... of yours (HTTP 404)."""

    code = "not_found"


class ConflictError(DspoolError):
    """The request conflicts with the state of things (HTTP 409)."""

    code = "conflict"


class UnauthorizedError(DspoolError, PermissionError):
    """No token, or one that is unknown, expired, revoked, or that of work
    that has ended (HTTP 401)."""

    code = "unauthorized"


class ForbiddenError(DspoolError, PermissionError):
    """The token lacks the scope, or the user the right (HTTP 403)."""

    code = "forbidden"


class TooLargeError(DspoolError):
    """The request is over a size limit (HTTP 413)."""

    code = "too_large"


class UnavailableError(DspoolError):
    """The server cannot do it now: try again later (HTTP 503)."""

    code = "unavailable"


class InternalError(DspoolError):
    """The server failed; an admin finds why in its log (HTTP 500)."""

    code = "internal"


class UnreachableError(UnavailableError, ConnectionError):
    """The server could not be reached at all, or its certificate was not
    trusted."""


class WaitTimeout(UnavailableError, TimeoutError):
    """A wait ran out of time while the job goes on; job is where it was."""

    def __init__(self, message, job=None):
        super().__init__(message)
        self.job = job


_BY_CODE = {c.code: c for c in (InvalidError, NotFoundError, ConflictError, UnauthorizedError,
                                ForbiddenError, TooLargeError, UnavailableError, InternalError)}

_BY_STATUS = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
              413: "too_large", 429: "unavailable", 502: "unavailable", 503: "unavailable", 504: "unavailable"}


def from_answer(status, body):
    """The exception of an error answer: its JSON error body when it has one,
    else one made from the HTTP status, as the Go client does."""
    import json

    try:
        err = json.loads(body.decode("utf-8"))["error"]
        code, field, message = err["code"], err.get("field", ""), err["message"]
    except (ValueError, KeyError, TypeError, AttributeError):
        code = _BY_STATUS.get(status, "internal")
        field = ""
        message = "server answered %d: %s" % (status, body.decode("utf-8", "replace").strip()[:2000])
    return _BY_CODE.get(code, DspoolError)(message, field=field, code=code, status=status)
