"""A Pipeline: BEHRT patient embeddings (pre-trained, no labels) -> scikit-survival's CoxPH.

Run: ``python examples/pipeline_cox.py``. ``SURVBEHRT_EXAMPLE_SCALE=0.2`` for a fast run.
"""

import os

from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from survbehrt import BEHRTPretrainer
from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets import make_synthetic_ehr

scale = float(os.environ.get("SURVBEHRT_EXAMPLE_SCALE", "1"))
X, y, _ = make_synthetic_ehr(n_patients=int(1000 * scale), random_state=0)
cv = KFold(3, shuffle=True, random_state=0)

embed_cox = make_pipeline(
    BEHRTPretrainer(objective="both", max_epochs=max(1, int(8 * scale)), random_state=0),
    StandardScaler(),
    CoxPHSurvivalAnalysis(alpha=1.0),
)
counts_cox = make_pipeline(CodeCountTransformer(min_frequency=5), StandardScaler(),
                           CoxPHSurvivalAnalysis(alpha=1.0))
for name, model in [("BEHRT embeddings -> CoxPH", embed_cox), ("code counts -> CoxPH", counts_cox)]:
    scores = cross_val_score(model, X, y, cv=cv)  # the pretrainer is refitted inside each fold
    print(f"{name:<28} C-index {scores.mean():.3f} ± {scores.std():.3f}")
