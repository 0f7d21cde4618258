"""Errors a service raises for a user to see; views turn them into a status code and a message."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Invalid(ServiceError):
    status = 422


class NotFound(ServiceError):
    status = 404


class Forbidden(ServiceError):
    status = 403


class Conflict(ServiceError):
    status = 409


class Unauthorized(ServiceError):
    status = 401
