import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def symmetric_matrix():
    """``make(p=12, seed=0, lam_min=-1.0) -> (A, lam, Q)``: a random symmetric p x p matrix
    ``A = Q diag(lam) Q^T`` with eigenvalues from lam_min to 3 and a top one of 5."""

    def make(p=12, seed=0, lam_min=-1.0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(p, p)))
        lam = np.linspace(lam_min, 3.0, p)
        lam[-1] = 5.0
        return (q * lam) @ q.T, lam, q

    return make
