"""Small hand-made cohorts shared by the tests."""

import numpy as np
import pandas as pd
from sksurv.util import Surv


def random_cohort(n=40, n_codes=12, max_visits=8, seed=0):
    """A small random cohort in the X contract, with a survival y."""
    rng = np.random.default_rng(seed)
    codes, ages, index_age = [], [], []
    for _ in range(n):
        n_vis = int(rng.integers(1, max_visits + 1))
        visits = [
            [f"C{int(c)}" for c in rng.integers(0, n_codes, size=int(rng.integers(1, 4)))]
            for _ in range(n_vis)
        ]
        a = np.sort(rng.uniform(30, 70, size=n_vis)).round(2).tolist()
        codes.append(visits)
        ages.append(a)
        index_age.append(a[-1] + float(rng.uniform(0, 1)))
    X = pd.DataFrame({"codes": codes, "ages": ages, "index_age": index_age})
    y = Surv.from_arrays(rng.random(n) < 0.5, rng.uniform(0.1, 5.0, size=n))
    y["event"][0] = True  # at least one event whatever the seed
    return X, y
