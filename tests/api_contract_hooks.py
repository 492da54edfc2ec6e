"""A schemathesis check that no user reaches another user's objects (loaded by ``SCHEMATHESIS_HOOKS``).

``tests/test_api_contract_stateful.py`` runs the schemathesis CLI once per user with this module as
its hooks and ``MNEMO_CONTRACT_USERS`` naming every user's key and seeded ids. Every answer to the
running user is checked (``Isolation.check``):

* a path parameter that is another user's id answers 404 (the same as a missing id,
  docs/architecture.md, "Keys and sessions");
* an id the caller reached (a 2xx with ids in the path) answers 404 to each other user's key,
  never 200: the request is sent again with that key;
* a 2xx body never contains another user's id; the ids it contains become the caller's.

Each request sent again is appended to ``MNEMO_CONTRACT_REPORT`` (JSON lines) when that is set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from schemathesis import CheckContext, Response
from schemathesis.generation.case import Case

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Lookups of the caller's own objects by id (admin routes answer 403 to users, /v1/me has no ids).
USER_OBJECTS = re.compile(r"^/v1/(concepts|jobs|images|adapters|generations)/")


def ids_in(value: Any) -> Iterator[str]:
    """Every id-shaped string in a decoded JSON body."""
    if isinstance(value, dict):
        for item in value.values():
            yield from ids_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from ids_in(item)
    elif isinstance(value, str) and UUID.match(value):
        yield value


def _json(response: Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass
class Isolation:
    """The users (``{name: {"key", "ids"}}``) and who owns each id seen so far."""

    users: dict[str, dict[str, Any]]
    owners: dict[str, str] = field(default_factory=dict)
    report: str | None = None

    def __post_init__(self) -> None:
        self.owners.update(
            {object_id: name for name, user in self.users.items() for object_id in user["ids"]}
        )

    @classmethod
    def from_env(cls) -> Isolation:
        users = json.loads(os.environ.get("MNEMO_CONTRACT_USERS", "{}"))
        return cls(users=users, report=os.environ.get("MNEMO_CONTRACT_REPORT"))

    def caller(self, response: Response) -> str:
        header = response.request.headers.get("Authorization", "")
        return next((name for name, user in self.users.items() if header == f"Bearer {user['key']}"), "")

    def foreign(self, values: Iterator[str] | list[str], *, caller: str) -> list[str]:
        return [value for value in values if self.owners.get(value, caller) != caller]

    def check(self, response: Response, case: Case) -> None:
        """Raise ``AssertionError`` when ``response`` let its caller reach another user's object."""
        caller = self.caller(response)
        if not caller:
            return  # schemathesis's own requests without (or with a broken) key
        parameters = [str(value) for value in (case.path_parameters or {}).values()]
        label = case.operation.label
        if self.foreign(parameters, caller=caller) and response.status_code != 404:
            raise AssertionError(
                f"{label} with another user's id answered {response.status_code} to {caller}"
            )
        if not 200 <= response.status_code < 300:
            return
        body_ids = set(ids_in(_json(response)))
        leaked = self.foreign(sorted(body_ids), caller=caller)
        if leaked:
            raise AssertionError(f"{label} showed {caller} another user's ids: {leaked}")
        self.owners.update(dict.fromkeys(body_ids | set(parameters), caller))
        if (
            parameters
            and USER_OBJECTS.match(case.path)
            and not isinstance(case.body, dict | list | str | bytes)
        ):
            self._ask_as_others(response, label=label, method=case.method, caller=caller)

    def _ask_as_others(self, response: Response, *, label: str, method: str, caller: str) -> None:
        """The same request with each other user's key: it must answer 404."""
        for name, user in self.users.items():
            if name == caller:
                continue
            headers = {"Authorization": f"Bearer {user['key']}"}
            status = requests.request(method, response.request.url, headers=headers, timeout=30).status_code
            self._report({"operation": label, "owner": caller, "asked_by": name, "status": status})
            if status != 404:
                raise AssertionError(f"{label}: {caller}'s object answered {status} to {name}, not 404")

    def _report(self, line: dict[str, Any]) -> None:
        if self.report:
            with open(self.report, "a", encoding="utf-8") as report:
                report.write(json.dumps(line) + "\n")


ISOLATION = Isolation.from_env()


@schemathesis.check
def no_cross_user_access(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    ISOLATION.check(response, case)
    return None
