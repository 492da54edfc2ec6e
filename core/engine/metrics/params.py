"""Parameter budgets of a method (paper App. E (i)–(ii), following Smith et al., 2024b).

* ``N_param Train``: parameters trained for one task, as a percentage of the U-Net's.
* ``N_param Store``: parameters kept over the whole task sequence, as a percentage of the
  U-Net's; the frozen U-Net itself counts as 100 %, so a method that stores nothing beyond
  the backbone scores 100.
"""

from __future__ import annotations


def n_param_train_pct(*, trained: int, unet: int) -> float:
    """100 · trained / unet."""
    if unet <= 0:
        raise ValueError("the U-Net parameter count must be positive")
    if trained < 0:
        raise ValueError("a parameter count cannot be negative")
    return 100.0 * trained / unet


def n_param_store_pct(*, stored: int, unet: int) -> float:
    """100 · (unet + stored) / unet: the backbone plus everything kept between tasks."""
    if unet <= 0:
        raise ValueError("the U-Net parameter count must be positive")
    if stored < 0:
        raise ValueError("a parameter count cannot be negative")
    return 100.0 * (unet + stored) / unet
