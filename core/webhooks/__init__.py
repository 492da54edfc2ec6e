"""Webhooks: a user's URL is told when their jobs change state (docs/webhooks.md).

* ``events``: the event names and the payloads (ids and states only, never user content);
* ``signing``: the per-user secret and the ``Mnemo-Signature`` header;
* ``urls``: which URLs and addresses a webhook may reach (http(s), public addresses by default);
* ``sender``: one POST with short timeouts to a vetted address;
* ``relay``: sends the committed delivery rows, retries with backoff, never blocks a job.

The rows are written by ``core.db.webhooks`` in the transaction of the state change they report.
"""
