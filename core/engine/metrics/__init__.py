"""The paper's evaluation metrics (App. E) as small pure functions over image features.

Torch-free at import time apart from what each submodule needs; the benchmark
(``bench/cl.py``) composes them. Every number must be reported with the name of the
feature extractor that produced it (``features.py``).
"""

from core.engine.metrics.continual import a_mmd, bwt_mmd, f_mmd, mean_over_seen
from core.engine.metrics.kernels import QUADRATIC_DEGREE, mmd, mmd2_biased, mmd2_unbiased, polynomial_kernel
from core.engine.metrics.kid import KidResult, kid
from core.engine.metrics.params import n_param_store_pct, n_param_train_pct
from core.engine.metrics.similarity import image_image_similarity

__all__ = [
    "QUADRATIC_DEGREE",
    "KidResult",
    "a_mmd",
    "bwt_mmd",
    "f_mmd",
    "image_image_similarity",
    "kid",
    "mean_over_seen",
    "mmd",
    "mmd2_biased",
    "mmd2_unbiased",
    "n_param_store_pct",
    "n_param_train_pct",
    "polynomial_kernel",
]
