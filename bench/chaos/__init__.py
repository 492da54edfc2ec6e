"""The chaos soak and what it shares with the fault-injection tests (docs/faults.md).

``mnemo bench chaos`` runs ``bench.chaos.soak``; ``servers`` starts Redis and PostgreSQL of one's
own, ``audit`` checks what a run under faults left.
"""

from bench.chaos.soak import add_arguments, run

__all__ = ["add_arguments", "run"]
