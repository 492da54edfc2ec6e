"""The statuses each kind of operation can answer, declared once for the OpenAPI document.

``api.app`` includes every router with ``router_responses(router)``: ``COMMON`` for all, plus
``USER`` (401, 403, 429) or ``ADMIN`` when its routes depend on ``current_user`` or
``admin_user`` — derived from the dependencies, so a new router cannot forget them. A route
adds ``NOT_FOUND`` when it looks an id up, ``BODY`` when it reads a request body and ``PAGE``
when it takes a cursor. Error bodies are ``ErrorOut`` (a message) or, for 422,
``ValidationErrorOut`` (the field errors of FastAPI's validation) — 422 declares both, so a
client generated from the document reads every answer (``tests/test_api_contract.py`` runs
schemathesis against it).

``LINKS`` are the document's OpenAPI links: which operation an answer's ids lead to (a created
job to its state and its cancel, a list to its items, a generation to its image, a lineage to an
export). A client follows
them, and schemathesis's stateful phase chains operations by them
(``tests/test_api_contract_stateful.py``, two users: no 5xx, no contract failure, and another
user's id always answers 404). ``router_responses`` attaches them to the operations they start from.
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


# (method, path, status) of an answer -> {link name: (target method, target path, {parameter: expression})}
Link = tuple[str, str, dict[str, str]]
JOB = {"job_id": "$response.body#/job/id"}
GENERATED: dict[str, Link] = {
    "GetJob": ("GET", "/v1/jobs/{job_id}", JOB),
    "CancelJob": ("POST", "/v1/jobs/{job_id}/cancel", JOB),
}
LINKS: dict[tuple[str, str, int], dict[str, Link]] = {
    ("POST", "/v1/generate", 202): GENERATED,
    ("POST", "/v1/generate", 200): {
        **GENERATED,
        "GetImage": ("GET", "/v1/images/{image_id}", {"image_id": "$response.body#/images/0/id"}),
    },
    ("POST", "/generate", 202): GENERATED,
    ("POST", "/v1/concepts", 202): {
        "GetConcept": ("GET", "/v1/concepts/{concept_id}", {"concept_id": "$response.body#/concept/id"}),
        **GENERATED,
    },
    ("GET", "/v1/concepts", 200): {
        "GetConcept": ("GET", "/v1/concepts/{concept_id}", {"concept_id": "$response.body#/concepts/0/id"}),
    },
    ("GET", "/v1/jobs", 200): {
        "GetJob": ("GET", "/v1/jobs/{job_id}", {"job_id": "$response.body#/jobs/0/id"}),
    },
    ("GET", "/v1/generations", 200): {
        "GetJob": ("GET", "/v1/jobs/{job_id}", {"job_id": "$response.body#/generations/0/job/id"}),
        "GetImage": (
            "GET",
            "/v1/images/{image_id}",
            {"image_id": "$response.body#/generations/0/images/0/id"},
        ),
    },
    ("GET", "/v1/jobs/{job_id}", 200): {
        "CancelJob": ("POST", "/v1/jobs/{job_id}/cancel", {"job_id": "$response.body#/id"}),
    },
    ("POST", "/v1/jobs/{job_id}/cancel", 200): {
        "GetJob": ("GET", "/v1/jobs/{job_id}", {"job_id": "$response.body#/id"}),
    },
    ("GET", "/v1/adapters", 200): {
        "ExportAdapter": (
            "GET",
            "/v1/adapters/{version}/export",
            {"version": "$response.body#/versions/0/id"},
        ),
    },
}


def _operation_ref(method: str, path: str) -> str:
    """A JSON pointer to the operation in the document (``~1`` escapes ``/``)."""
    return f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}"


def _attach_links(route: APIRoute) -> None:
    """Give ``route`` the links its answers start (a new dict: routes share the constants above)."""
    responses = dict(route.responses)
    for method in route.methods:
        for (source_method, path, status), links in LINKS.items():
            if (source_method, path) != (method, route.path):
                continue
            declared = {
                name: {"operationRef": _operation_ref(target_method, target_path), "parameters": parameters}
                for name, (target_method, target_path, parameters) in links.items()
            }
            responses[status] = {**responses.get(status, {}), "links": declared}
    route.responses = responses


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def router_responses(router: APIRouter) -> Responses:
    """What every operation of ``router`` can answer, from its routes' dependencies (and, on each
    route, the ``LINKS`` its answers start)."""
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    for route in routes:
        _attach_links(route)
    calls = {call for route in routes for call in _calls(route.dependant)}
    responses = dict(COMMON)
    if current_user in calls:
        responses.update(USER)
    if admin_user in calls:
        responses.update(ADMIN)
    return responses
