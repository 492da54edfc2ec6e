"""Relational state of the service: models, sessions and small keyword-only query functions.

No torch import anywhere below this package.
"""
