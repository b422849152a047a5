"""The seed notebook's data set."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_blobs

__all__ = ["SEED_CENTERS", "SEED_SIZES", "make_seed_blobs"]

#: The seed's four blob centres: bottom left, middle, mid-right, bottom right.
SEED_CENTERS = np.array([[1.0, -1.0], [5.0, 5.0], [8.0, 7.0], [10.0, 0.0]])
#: Points per blob; the last blob is small on purpose.
SEED_SIZES = (30, 50, 20, 5)


def make_seed_blobs(random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """The seed's ``make_ds()``: 105 points in four blobs of unit standard deviation.

    Parameters
    ----------
    random_state : int or RandomState, default=0
        Seed of ``sklearn.datasets.make_blobs`` (the notebook left it unset).

    Returns
    -------
    X : ndarray of shape (105, 2)
    y : ndarray of shape (105,)
        The blob each point came from.
    """
    return make_blobs(list(SEED_SIZES), centers=SEED_CENTERS, random_state=random_state)
