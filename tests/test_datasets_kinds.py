"""The "latent" and "synonyms" generators, and the unlabelled pool of every kind."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events, make_unlabelled_pool

KINDS = ("sequence", "counts", "latent", "synonyms")
NEW = ("latent", "synonyms")


def _cohort(scenario):
    return make_synthetic_ehr(n_patients=3000, scenario=scenario, random_state=0, return_info=True)


@pytest.fixture(scope="module")
def latent():
    return _cohort("latent")


@pytest.fixture(scope="module")
def synonyms():
    return _cohort("synonyms")


@pytest.fixture(params=NEW)
def cohort(request):
    return request.param, request.getfixturevalue(request.param)


def _flat(X):
    return [c for visits in X["codes"] for v in visits for c in v]


@pytest.mark.parametrize("scenario", NEW)
def test_deterministic_under_random_state(scenario):
    a = make_synthetic_ehr(n_patients=200, scenario=scenario, random_state=7)
    b = make_synthetic_ehr(n_patients=200, scenario=scenario, random_state=7)
    pd.testing.assert_frame_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    c = make_synthetic_ehr(n_patients=200, scenario=scenario, random_state=8)
    assert a[0]["codes"].tolist() != c[0]["codes"].tolist()
    assert not np.array_equal(a[1]["time"], c[1]["time"])


def test_a_valid_cohort(cohort):
    validation = pytest.importorskip("survbehrt.data.validation")
    _, (X, y, risk, info) = cohort
    validation.check_ehr_frame(X, require_index_age=True)
    validation.check_survival_y(y, n_samples=len(X))
    n_visits = X["codes"].map(len).to_numpy()
    assert n_visits.min() >= 1 and n_visits.max() <= 30 and len(np.unique(n_visits)) > 10
    for visits, ages, index_age in zip(X["codes"], X["ages"], X["index_age"]):
        assert all(v and len(set(v)) == len(v) for v in visits)  # no repeat within a visit
        assert np.all(np.diff(ages) > 0)  # distinct days, oldest first
        assert 18.0 <= ages[0] and ages[-1] < index_age and index_age - ages[-1] < 120 / 365.25
    assert (y["time"] > 0).all() and (y["time"] <= 8.0).all() and len(np.unique(y["time"])) == len(X)
    assert 0.3 <= y["event"].mean() <= 0.65
    np.testing.assert_allclose(info["components"].sum(axis=1).to_numpy(), risk, atol=1e-12)


def test_latent_risk_is_the_documented_function_of_the_stage(latent):
    X, _, risk, info = latent
    stage = info["stage"]
    assert set(np.unique(stage)) == {0, 1, 2, 3}
    beta = {0: 0.0, 1: 0.9, 2: 1.8, 3: 2.7}  # from the docstring
    for i in range(len(X)):
        expected = 0.35 * (X["index_age"][i] - 60.0) / 10.0 + beta[int(stage[i])]
        assert risk[i] == pytest.approx(expected, abs=1e-12)
    # the stage shows (noisily) in the codes: each stage's own codes are most frequent in it
    sets = {int(k[-1]): set(v) for k, v in info["signal_codes"].items()}
    visits = [v for patient in X["codes"] for v in patient]
    assert len(visits) == len(info["visit_stage"])
    share = np.zeros((4, 4))  # share[s, t]: codes of stage t's set per visit in stage s
    for v, s in zip(visits, info["visit_stage"]):
        share[s] += [len(sets[t].intersection(v)) for t in range(4)]
    share /= np.bincount(info["visit_stage"], minlength=4)[:, None]
    assert (np.argmax(share, axis=1) == np.arange(4)).all(), share


def test_synonyms_risk_follows_the_documented_rules(synonyms):
    """Recompute every term of true_risk from X with a plain loop, as the docstring says."""
    X, _, risk, info = synonyms
    prefix = info["concepts"]
    for name, codes in info["signal_codes"].items():
        assert len(codes) == 20 and all(c.startswith(prefix[name] + ".") for c in codes)
    n_order = n_tempo = 0
    for i, (visits, ages, index_age) in enumerate(zip(X["codes"], X["ages"], X["index_age"])):
        where = {g: [j for j, v in enumerate(visits) if any(c.startswith(p + ".") for c in v)]
                 for g, p in prefix.items()}
        order = bool(where["P"] and where["Q"]) and where["P"][0] < where["Q"][0]
        recency = np.exp(-(index_age - ages[where["R"][0]])) if where["R"] else 0.0
        tempo = sum(index_age - a <= 1.0 for a in ages) >= 3
        expected = (0.3 * (index_age - 60.0) / 10.0 + 1.6 * order + 2.0 * recency + 1.4 * tempo)
        assert risk[i] == pytest.approx(expected, abs=1e-9), i
        assert len(where["R"]) <= 1 and len(where["P"]) <= 3 and len(where["Q"]) <= 3
        n_order += order
        n_tempo += tempo
    for count in (n_order, n_tempo):
        assert 0.1 * len(X) < count < 0.6 * len(X)
    # each risk concept is spread thin: synonym k has weight k ** -0.5, so the most
    # frequent of 20 holds 1 / sum(k ** -0.5) = 13 % of its concept's uses
    top = 1.0 / sum(k ** -0.5 for k in range(1, 21))
    freq = pd.Series(_flat(X)).value_counts()
    for codes in info["signal_codes"].values():
        uses = freq.reindex(codes, fill_value=0)
        assert uses.max() / uses.sum() == pytest.approx(top, abs=0.03)


def test_the_order_of_p_and_q_leaves_no_trace_in_their_counts(synonyms):
    X, _, _, info = synonyms
    p, q = (set(info["signal_codes"][g]) for g in "PQ")
    diff, first = [], []
    for visits in X["codes"]:
        vp = [j for j, v in enumerate(visits) if p.intersection(v)]
        vq = [j for j, v in enumerate(visits) if q.intersection(v)]
        if vp and vq and vp[0] != vq[0]:
            diff.append(len(vp) - len(vq))
            first.append(vp[0] < vq[0])
    diff, first = np.array(diff), np.array(first)
    # the P-minus-Q visit counts are alike whichever came first: a two-sample test
    gap = diff[first].mean() - diff[~first].mean()
    se = np.sqrt(diff[first].var() / first.sum() + diff[~first].var() / (~first).sum())
    assert abs(gap) < 4 * se, (gap, se)


def test_the_true_risk_drives_the_outcome(cohort):
    """A Cox model on the true log-risk alone estimates a coefficient of 1.

    Under proportional hazards the maximum-likelihood coefficient has a standard error
    of about ``1 / sqrt(d * Var(risk))`` (``d`` events): the tolerance is 4 of those.
    """
    _, (_, y, risk, _) = cohort
    cox = CoxPHSurvivalAnalysis().fit(risk[:, None], y)
    se = 1.0 / np.sqrt(y["event"].sum() * risk.var())
    assert abs(cox.coef_[0] - 1.0) < 4 * se, (cox.coef_[0], se)


def _c(y, score):
    return concordance_index_censored(y["event"], y["time"], score)[0]


def test_the_latent_stage_is_not_a_function_of_code_counts():
    """The oracle beats a Cox model on every code's count by a margin (4,000 / 4,000)."""
    X, y, risk = make_synthetic_ehr(n_patients=8000, scenario="latent", random_state=1)
    model = make_pipeline(CodeCountTransformer(min_frequency=5),
                          CoxPHSurvivalAnalysis(alpha=10.0)).fit(X[:4000], y[:4000])
    oracle, cox = _c(y[4000:], risk[4000:]), _c(y[4000:], model.predict(X[4000:]))
    assert oracle - cox >= 0.02, (oracle, cox)
    assert cox > 0.65  # the codes do carry the stage, noisily


def test_other_code_systems_are_refused():
    with pytest.raises(ValueError, match="n_clusters"):
        make_synthetic_ehr(n_patients=10, scenario="latent", n_clusters=9)
    with pytest.raises(ValueError, match="scenario must be one of"):
        make_unlabelled_pool(10, scenario="stages")


@pytest.mark.parametrize("scenario", NEW)
def test_events_of_the_new_kinds_match_the_frame(scenario):
    events, labels = make_synthetic_events(n_patients=80, scenario=scenario, random_state=2,
                                           include_future=False)
    X, y, risk = make_synthetic_ehr(n_patients=80, scenario=scenario, random_state=2)
    np.testing.assert_array_equal(labels["true_risk"], risk)
    np.testing.assert_array_equal(labels["event"], y["event"])
    codes = events.loc[events["code"] != "MEDS_BIRTH"]
    assert codes["code"].tolist() == _flat(X)


def _code_distribution(X):
    return pd.Series(_flat(X)).value_counts(normalize=True)


def _tv(a, b):
    return 0.5 * a.sub(b, fill_value=0.0).abs().sum()


@pytest.mark.parametrize("scenario", KINDS)
def test_the_pool_is_unlabelled_and_from_the_same_population(scenario):
    X, _, _ = make_synthetic_ehr(n_patients=1500, scenario=scenario, random_state=0)
    pool = make_unlabelled_pool(1500, scenario=scenario, random_state=0)
    # no label of any kind: the frame's own columns only
    assert isinstance(pool, pd.DataFrame) and list(pool.columns) == ["codes", "ages", "index_age"]
    pd.testing.assert_frame_equal(pool, make_unlabelled_pool(1500, scenario=scenario, random_state=0))
    # an independent stream: not the labelled patients again
    assert sum(a == b for a, b in zip(pool["codes"], X["codes"])) == 0
    # the same code distribution: the pool is no farther from the cohort than a second
    # cohort of the population is (total variation of the code frequencies)
    other, _, _ = make_synthetic_ehr(n_patients=1500, scenario=scenario, random_state=1)
    reference = _tv(_code_distribution(X), _code_distribution(other))
    assert _tv(_code_distribution(X), _code_distribution(pool)) < 1.5 * reference
    # and a different population is farther: the comparison can fail
    shifted = make_unlabelled_pool(1500, scenario=scenario, random_state=0, mean_codes_per_visit=4.0)
    assert _tv(_code_distribution(X), _code_distribution(shifted)) > 1.5 * reference
    assert pool["index_age"].mean() == pytest.approx(X["index_age"].mean(), abs=1.5)
