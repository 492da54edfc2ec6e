"""The broker contract: task names and queues (``names``), the Celery app factory (``app``), the
server-less transport of the embedded mode (``transport``) and the outbox relay (``outbox``).

Both sides import it: the API sends committed outbox rows by task name and never imports worker
code; the worker consumes the same names. Messages carry only a job id; the SQL database owns
job state (docs/architecture.md, "The job protocol"). ``names`` imports nothing, so the database
layer can name tasks without loading Celery.
"""
