"""The statuses each kind of operation can answer, declared once for the OpenAPI document.

``api.app`` includes every router with ``router_responses(router)``: ``COMMON`` for all, plus
``USER`` (401, 403, 429) or ``ADMIN`` when its routes depend on ``current_user`` or
``admin_user`` — derived from the dependencies, so a new router cannot forget them. A route
adds ``NOT_FOUND`` when it looks an id up, ``BODY`` when it reads a request body and ``PAGE``
when it takes a cursor. Error bodies are ``ErrorOut`` (a message) or, for 422,
``ValidationErrorOut`` (the field errors of FastAPI's validation) — 422 declares both, so a
client generated from the document reads every answer (``tests/test_api_contract.py`` runs
schemathesis against it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.deps import admin_user, current_user
from api.schemas import ErrorOut, InternalErrorOut, UnknownTokenOut, ValidationErrorOut

Responses = dict[int | str, dict[str, Any]]

RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "the scheme to use: Bearer",
        "required": True,
        "schema": {"type": "string"},
    }
}


def error(description: str, model: Any = ErrorOut, **extra: Any) -> dict[str, Any]:
    """One documented error answer (``extra``: e.g. ``headers``)."""
    return {"model": model, "description": description, **extra}


INVALID = error(
    "invalid fields (a list of field errors), a refused value (a message), or a NUL character in the URL",
    ValidationErrorOut | ErrorOut,
)
COMMON: Responses = {
    422: INVALID,
    500: error(
        "internal error: logged with its request id, never with the request's content", InternalErrorOut
    ),
}
USER: Responses = {
    401: error("missing or invalid API key", headers=WWW_AUTHENTICATE),
    403: error("this account is disabled"),
    429: error("too many requests (failed keys from your address, or a quota)", headers=RETRY_AFTER),
}
ADMIN: Responses = {**USER, 403: error("admin role required, or this account is disabled")}
NOT_FOUND: Responses = {404: error("no such id (to a user, another user's id answers the same)")}
BODY: Responses = {
    400: error("the body could not be parsed"),
    413: error("the request body is too large"),
}
PAGE: Responses = {400: error("invalid cursor: pass back next_cursor unchanged")}
GENERATE_INVALID = error(
    "invalid fields (a list of field errors), an unknown <token> in the prompt, or a value over a limit",
    ValidationErrorOut | UnknownTokenOut | ErrorOut,
)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def router_responses(router: APIRouter) -> Responses:
    """What every operation of ``router`` can answer, from its routes' dependencies."""
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    calls = {call for route in routes for call in _calls(route.dependant)}
    responses = dict(COMMON)
    if current_user in calls:
        responses.update(USER)
    if admin_user in calls:
        responses.update(ADMIN)
    return responses
