"""survbehrt.datasets.competing: the synthetic competing-risks cohort against its known truth."""

import numpy as np
import pytest

from survbehrt.competing_metrics import aalen_johansen, cause_specific_c
from survbehrt.data import cause_names, check_ehr_frame
from survbehrt.datasets.competing import make_synthetic_competing, true_cumulative_incidence

TIMES = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_competing(n_patients=10_000, random_state=0, return_info=True)


def _aj_at(y, times):
    grid, cif = aalen_johansen(y, n_causes=2)
    return cif[1:, np.searchsorted(grid, times, side="right") - 1]


def test_the_aalen_johansen_of_a_large_sample_matches_the_truth(cohort):
    X, y, lp, _ = cohort
    check_ehr_frame(X)
    assert cause_names(y) == ("outcome", "death")
    assert np.bincount(y["event"], minlength=3).min() > 1000  # both causes and censoring
    truth = true_cumulative_incidence(lp, TIMES).mean(axis=0)  # the population's CIF
    np.testing.assert_allclose(_aj_at(y, TIMES), truth, atol=0.02)
    # ... and within groups defined by the history, where the causes differ most
    for k in (0, 1):
        high = lp[:, k] > np.median(lp[:, k])
        for group in (high, ~high):
            truth = true_cumulative_incidence(lp[group], TIMES).mean(axis=0)
            np.testing.assert_allclose(_aj_at(y[group], TIMES), truth, atol=0.03)


def test_true_incidences_sum_to_one_minus_survival_and_hazards_differ_by_cause(cohort):
    _, y, lp, info = cohort
    cif = true_cumulative_incidence(lp[:5], np.array([0.0, 1e6]))
    np.testing.assert_allclose(cif[:, :, 0], 0.0)
    np.testing.assert_allclose(cif[:, :, 1].sum(axis=1), 1.0)
    # each cause's own log-hazard ranks its cases better than the other cause's
    y, lp_ = y[:3000], lp[:3000]
    for k, other in ((1, 2), (2, 1)):
        own = cause_specific_c(y, lp_[:, k - 1], k)
        assert own > cause_specific_c(y, lp_[:, other - 1], k) + 0.05
    features = info["features"]
    np.testing.assert_allclose(
        lp[:, 1], 0.7 * features["age"] + 1.2 * features["D_present"] + 1.5 * features["tempo"]
    )


def test_effect_scale_zero_leaves_age_only():
    _, _, lp, info = make_synthetic_competing(n_patients=200, random_state=1, effect_scale=0.0,
                                              return_info=True)
    np.testing.assert_allclose(lp, np.outer(info["features"]["age"], [0.3, 0.7]))
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_synthetic_competing(n_patients=10, nonsense=1)
