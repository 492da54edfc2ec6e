"""Image-image alignment ("CLIP I2I", Gal et al. 2023; Kumari et al. 2023; paper App. E (vi)).

The mean pairwise cosine similarity between generated and real image features, ×100.
It is "CLIP" I2I only when the features come from a CLIP image encoder; every table names
the extractor that produced the features.
"""

from __future__ import annotations

import torch


def image_image_similarity(real: torch.Tensor, fake: torch.Tensor) -> float:
    """100 · mean_{a,b} cos(real_a, fake_b) for real [N, D], fake [M, D]."""
    if real.ndim != 2 or fake.ndim != 2:
        raise ValueError("features must be [N, D] matrices")
    if real.shape[0] == 0 or fake.shape[0] == 0:
        raise ValueError("image-image similarity needs at least one image on each side")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    r = torch.nn.functional.normalize(real.detach().to(torch.float64), dim=1)
    f = torch.nn.functional.normalize(fake.detach().to(torch.float64), dim=1)
    return float(100.0 * (r @ f.T).mean())
