"""GridSearchCV over strategy x loss, with scikit-survival's IPCW C-index scorer.

Run: ``python examples/grid_search.py``. ``SURVBEHRT_EXAMPLE_SCALE=0.2`` for a fast run.
"""

import os

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.metrics import as_concordance_index_ipcw_scorer

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr

scale = float(os.environ.get("SURVBEHRT_EXAMPLE_SCALE", "1"))
X, y, _ = make_synthetic_ehr(n_patients=int(1000 * scale), random_state=0)
epochs = max(2, int(8 * scale))

# One pretrainer, shared by every fold and candidate: clone() keeps a fitted pretrainer.
pretrainer = BEHRTPretrainer(max_epochs=max(1, int(5 * scale)), random_state=0).fit(X)
est = BEHRTSurvivalEstimator(pretrained=pretrainer, max_epochs=epochs, random_state=0)
grid = {"strategy": ["lora", "full"], "loss": ["nll", "hybrid"]}

search = GridSearchCV(est, grid, cv=KFold(3, shuffle=True, random_state=0))
search.fit(X, y)
print("Harrell's C by candidate:")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  {params}: {score:.3f}")
print("best:", search.best_params_)

# The same search scored by Uno's C (IPCW) truncated at the 80th percentile of follow-up.
tau = float(np.percentile(y["time"], 80))
wrapped = as_concordance_index_ipcw_scorer(est, tau=tau)
search = GridSearchCV(wrapped, {f"estimator__{k}": v for k, v in grid.items()},
                      cv=KFold(3, shuffle=True, random_state=0)).fit(X, y)
print("best by Uno's C:", search.best_params_, round(search.best_score_, 3))
