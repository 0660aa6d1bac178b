"""numpy's huge-page advice is off inside the data path's heavy calls, and restored after."""

import sys

import pytest

from survbehrt.data import from_events
from survbehrt.data._pages import _SET_ADVICE, plain_pages
from survbehrt.data.tokenizer import EHRTokenizer
from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events

pytestmark = pytest.mark.skipif(_SET_ADVICE is None, reason="this numpy has no advice switch")


def advice():
    """numpy's current huge-page advice (read by setting it and putting it back)."""
    current = _SET_ADVICE(True)
    _SET_ADVICE(current)
    return current


@pytest.fixture
def advice_on():
    before = _SET_ADVICE(True)
    yield
    _SET_ADVICE(before)


def advice_seen_in(call, function_name):
    """The advice at each entry into ``function_name`` while ``call()`` runs (a profile hook)."""
    seen = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name == function_name:
            seen.append(advice())

    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    return seen


def test_decorator_switches_off_and_restores(advice_on):
    @plain_pages
    def inside():
        return advice()

    assert inside() is False
    assert advice() is True

    @plain_pages
    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing()
    assert advice() is True


def test_explicit_user_setting_is_kept(advice_on, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert plain_pages(advice)() is True


def test_conversion_and_tokenization_run_without_advice(advice_on):
    events, labels = make_synthetic_events(n_patients=20, random_state=0)
    seen = advice_seen_in(lambda: from_events(events, labels[["subject_id", "prediction_time"]]),
                          "_build_frame")
    assert seen == [False]
    X, _, _ = make_synthetic_ehr(n_patients=20, random_state=0)
    tokenizer = EHRTokenizer()
    assert advice_seen_in(lambda: tokenizer.fit(X), "_fit_flat") == [False]
    assert advice_seen_in(lambda: tokenizer.transform(X), "_tokenize") == [False]
    assert advice_seen_in(lambda: EHRTokenizer().fit_transform(X), "_tokenize") == [False]
    assert advice() is True
