"""survbehrt.data.competing: the competing-risks y, its cause names and conversions."""

import pickle

import numpy as np
import pytest
from sksurv.util import check_y_survival

from survbehrt.data import (
    cause_names,
    cause_specific_y,
    check_competing_y,
    check_survival_y,
    competing_y,
)


def test_layout_is_scikit_survivals_and_the_names_survive():
    y = competing_y([0, 2, 1, 2], [3.0, 1.5, 2.0, 0.5], causes=["mi", "death"])
    event, time = check_y_survival(y, competing_risks=True)  # sksurv accepts it as is
    assert event.tolist() == [0, 2, 1, 2] and time.tolist() == [3.0, 1.5, 2.0, 0.5]
    for kept in (y[[1, 3]], y[y["event"] > 0], np.concatenate([y, y]), y.copy(),
                 pickle.loads(pickle.dumps(y))):
        assert cause_names(kept) == ("mi", "death")
    assert cause_names(competing_y([0, 3], [1.0, 1.0])) == ("1", "2", "3")


def test_cause_specific_y_censors_the_other_causes():
    y = competing_y([0, 2, 1, 2], [3.0, 1.5, 2.0, 0.5], causes=["mi", "death"])
    for cause in ("death", 2):
        out = cause_specific_y(y, cause)
        assert out.dtype.names == ("event", "time") and out["event"].dtype == bool
        assert out["event"].tolist() == [False, True, False, True]
        np.testing.assert_array_equal(out["time"], y["time"])
    with pytest.raises(ValueError, match=r"'stroke' is not one of the causes of y, \['mi'"):
        cause_specific_y(y, "stroke")
    with pytest.raises(ValueError, match=r"cause must be in 1..2; got 3"):
        cause_specific_y(y, 3)


def test_bad_competing_y():
    with pytest.raises(ValueError, match="event row 1: type 3 is not 0"):
        competing_y([0, 3], [1.0, 1.0], causes=["a", "b"])
    with pytest.raises(ValueError, match="distinct non-empty names"):
        competing_y([0, 1], [1.0, 1.0], causes=["a", "a"])
    bad = competing_y([0, 1], [1.0, np.nan])
    with pytest.raises(ValueError, match="y row 1, field 'time': non-finite time"):
        check_competing_y(bad)
    with pytest.raises(TypeError, match="integer event types"):
        check_competing_y(np.array([(0.5, 1.0)], dtype=[("e", "f8"), ("t", "f8")]))
    event, time, k = check_competing_y(competing_y([0, 1], [1.0, 2.0], causes=["a", "b"]))
    assert k == 2 and event.tolist() == [0, 1]


def test_a_single_cause_check_refuses_a_multi_cause_y_clearly():
    y = competing_y([0, 2, 1], [3.0, 1.5, 2.0], causes=["mi", "death"])
    with pytest.raises(TypeError, match=r"competing-risks y \(causes 1..2\).*cause_specific_y"):
        check_survival_y(y)


def test_the_single_cause_estimator_refuses_a_multi_cause_y():
    from survbehrt import BEHRTSurvivalEstimator
    from survbehrt.datasets.competing import make_synthetic_competing

    X, y, _ = make_synthetic_competing(n_patients=40, random_state=0)
    model = BEHRTSurvivalEstimator(embedding_dim=8, num_layers=1, num_heads=1, ff_dim=8,
                                   max_epochs=1)
    with pytest.raises(TypeError, match="competing-risks y .*cause_specific_y"):
        model.fit(X, y)
