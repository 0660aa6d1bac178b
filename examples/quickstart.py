"""Quickstart: fit BEHRT on a synthetic cohort, predict, evaluate and plot.

Run: ``python examples/quickstart.py`` (about a minute on 2 CPU cores). Set
``SURVBEHRT_EXAMPLE_SCALE=0.2`` for a faster, smaller run.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from survbehrt import BEHRTSurvivalEstimator  # noqa: E402
from survbehrt.datasets import make_synthetic_ehr  # noqa: E402
from survbehrt.metrics import evaluate  # noqa: E402
from survbehrt.plotting import plot_survival_curves, plot_training_history  # noqa: E402

scale = float(os.environ.get("SURVBEHRT_EXAMPLE_SCALE", "1"))
X, y, true_risk = make_synthetic_ehr(n_patients=int(1500 * scale), random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                    stratify=y["event"])
print(X.head(3))

est = BEHRTSurvivalEstimator(loss="hybrid", max_epochs=max(2, int(15 * scale)), random_state=0)
est.fit(X_train, y_train)

risk = est.predict(X_test)                      # higher = earlier event
surv = est.predict_survival_function(X_test)    # sksurv StepFunctions
print("Harrell's C:", round(est.score(X_test, y_test), 3))
print({k: round(v, 3) for k, v in evaluate(est, X_test, y_test, y_train).items()
       if isinstance(v, float)})
print("S(1 year) of the first three test patients:", np.round([fn(1.0) for fn in surv[:3]], 3))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
plot_survival_curves(surv[:4], y=y_test, labels=[f"patient {i}" for i in range(4)], ax=axes[0])
plot_training_history(est.history_, keys=("train_loss", "valid_loss"), ax=axes[1])
fig.tight_layout()
fig.savefig("quickstart.png")
print("wrote quickstart.png")
