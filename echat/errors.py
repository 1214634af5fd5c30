"""The error family of the API: each error is a status and a code from the contract.

Routes and the store raise these; one handler in `echat.app` renders every failure, the
framework's own included, as `{"error": {"code": ...}}`. WebSocket handlers send the same body
as a frame (`error_body`).
"""

from __future__ import annotations


class EchatError(Exception):
    """An error the client is told about: `status` and `code` come from the contract."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.code, self.message)


def error_body(code: str, message: str | None = None) -> dict:
    error: dict[str, str] = {"code": code}
    if message:
        error["message"] = message
    return {"error": error}


class InvalidJson(EchatError):
    status, code = 422, "invalid_json"


class InvalidLogin(EchatError):
    status, code = 422, "invalid_login"


class InvalidPassword(EchatError):
    status, code = 422, "invalid_password"


class UserAlreadyExists(EchatError):
    status, code = 422, "user_already_exists"


class UserNotFound(EchatError):
    status, code = 422, "user_not_found"


class WrongCredentials(EchatError):
    status, code = 422, "wrong_credentials"


class RoomNotFound(EchatError):
    status, code = 422, "room_not_found"


class MessageNotFound(EchatError):
    status, code = 422, "message_not_found"


class EmptyText(EchatError):
    status, code = 422, "empty_text"


class TextTooLong(EchatError):
    status, code = 422, "text_too_long"


class Unauthorized(EchatError):
    status, code = 401, "unauthorized"


class Forbidden(EchatError):
    status, code = 403, "forbidden"


class NotFound(EchatError):
    status, code = 404, "not_found"


class MethodNotAllowed(EchatError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(EchatError):
    status, code = 413, "payload_too_large"


class TooManyRequests(EchatError):
    status, code = 429, "too_many_requests"

    def __init__(self, retry_after: float) -> None:
        # Retry-After is whole seconds; round up so a client that obeys it is not refused again.
        self.retry_after = max(1, int(-(-retry_after // 1)))
        super().__init__(headers={"Retry-After": str(self.retry_after)})


class InternalError(EchatError):
    status, code = 500, "internal_error"


# The framework raises werkzeug's HTTP errors for routing and body size; they map onto ours.
BY_STATUS: dict[int, type[EchatError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}
