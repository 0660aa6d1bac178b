"""Pre-train one BEHRT encoder, then fine-tune it with each strategy (frozen, LoRA, full).

Run: ``python examples/pretrain_finetune.py``. ``SURVBEHRT_EXAMPLE_SCALE=0.2`` for a fast run.
"""

import os

from sklearn.model_selection import train_test_split

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr

scale = float(os.environ.get("SURVBEHRT_EXAMPLE_SCALE", "1"))
X, y, _ = make_synthetic_ehr(n_patients=int(1500 * scale), random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                    stratify=y["event"])

# Pre-training needs no outcome: it could use many more (unlabelled) histories than y has.
pretrainer = BEHRTPretrainer(objective="both", max_epochs=max(1, int(8 * scale)), random_state=0)
pretrainer.fit(X_train)
print("masked-code accuracy on held-out histories:", round(pretrainer.score(X_test), 3))
pretrainer.save("pretrainer.pt")  # weights + config + vocabulary, reloadable with .load

for strategy in ("frozen", "lora", "full"):
    est = BEHRTSurvivalEstimator(strategy=strategy, pretrained=pretrainer,
                                 max_epochs=max(2, int(12 * scale)), random_state=0,
                                 lr=3e-3 if strategy != "full" else 1e-3)
    est.fit(X_train, y_train)
    print(f"{strategy:>6}: trains {est.n_trainable_params_:>7,} of {est.n_params_:,} parameters, "
          f"test C-index {est.score(X_test, y_test):.3f}")
