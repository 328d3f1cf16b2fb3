"""Error types and the one JSON error format of the service.

Every error leaves as {"error": {"status": ..., "message": ...}} (plus any
details the error carries). Unexpected exceptions are logged with their
traceback here and answered with a generic 500: a stack trace never reaches
a client, whatever Sanic's debug setting.
"""

from __future__ import annotations

import logging

from sanic import Request
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse, json

logger = logging.getLogger(__name__)


class ServiceError(SanicException):
    """Base of the service's own errors: a status, a message, extra fields."""

    status_code = 500

    # Not `extra`: SanicException already uses that name for its error pages.
    def __init__(self, message: str, *, details: dict | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.details = details or {}


class InvalidRequest(ServiceError):
    status_code = 400


class UserNotFound(ServiceError):
    status_code = 404


class BatchTooLarge(ServiceError):
    status_code = 413


class ServiceUnavailable(ServiceError):
    status_code = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class JsonErrorHandler(ErrorHandler):
    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException):
            status = exception.status_code
            message = str(exception) or "error"
            headers = dict(getattr(exception, "headers", None) or {})
            details = getattr(exception, "details", None) or {}
            if status >= 500:
                logger.warning(
                    "%s %s -> %d: %s", request.method, request.path, status, message
                )
        else:
            logger.error(
                "unhandled error on %s %s",
                request.method,
                request.path,
                exc_info=exception,
            )
            status, message, headers, details = 500, "internal server error", {}, {}
        body = {"error": {"status": status, "message": message, **details}}
        return json(body, status=status, headers=headers)
