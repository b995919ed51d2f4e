"""Failures the emulator answers, shaped as the API server shapes them.

Clients (kopf, kubectl, the ``kubernetes`` client) branch on a ``Status`` body's
``code`` and ``reason`` and show its ``message``, so every refusal is built here,
with the server's wording, instead of being written out at each place that refuses.
"""
from __future__ import annotations

import kmock


class ApiError(Exception):
    """An API failure answered as a Kubernetes ``Status``, not a traceback."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details, "code": self.code,
        }


def _qualified(res: kmock.resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _details(res: kmock.resource, name: str | None, causes: list | None = None) -> dict:
    details = {"name": name, "group": res.group, "kind": res.plural}
    if causes:
        details["causes"] = causes
    return {k: v for k, v in details.items() if v}


def not_found(res: kmock.resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(res)} "{name}" not found', _details(res, name))


def no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def already_exists(res: kmock.resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(res)} "{name}" already exists', _details(res, name))


def conflict(res: kmock.resource, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(res)} "{name}": {why}',
                    _details(res, name))


def namespace_terminating(res: kmock.resource, name: str, namespace: str) -> ApiError:
    return ApiError(403, "Forbidden",
                    f'{res.plural} "{name}" is forbidden: unable to create new content in namespace '
                    f"{namespace} because it is being terminated", _details(res, name))


def invalid(res: kmock.resource, kind: str, name: str, field: str, detail: str,
            cause: str = "FieldValueInvalid") -> ApiError:
    group = f".{res.group}" if res.group else ""
    message = f'{kind}{group} "{name}" is invalid: {field}: {detail}'
    causes = [{"reason": cause, "message": detail, "field": field}]
    return ApiError(422, "Invalid", message, {"name": name, "group": res.group, "kind": kind, "causes": causes})


def patch_failed(message: str) -> ApiError:
    """A JSON patch that does not apply (a failed ``test`` op included): 422, as the server says."""
    return ApiError(422, "Invalid", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def expired(cursor: int, oldest_kept: int) -> ApiError:
    """A watch asked to resume from a resourceVersion older than the kept history: 410 Gone."""
    return ApiError(410, "Expired", f"too old resource version: {cursor} ({oldest_kept})")
