"""Task and queue names of the broker contract (no imports: the database layer uses them too).

One task per job kind, each on its own queue and exchange, so a train message is never delivered
to a generate consumer. ``TASK_NAMES`` is keyed by ``core.db.models.JobKind`` values.
"""

from __future__ import annotations

TRAIN_TASK_NAME = "mnemo.train"
GENERATE_TASK_NAME = "mnemo.generate"
TASK_NAMES = {"train": TRAIN_TASK_NAME, "generate": GENERATE_TASK_NAME}

TRAIN_QUEUE = "mnemo.train"
GENERATE_QUEUE = "mnemo.generate"
QUEUES = (TRAIN_QUEUE, GENERATE_QUEUE)
TASK_QUEUES = {TRAIN_TASK_NAME: TRAIN_QUEUE, GENERATE_TASK_NAME: GENERATE_QUEUE}
