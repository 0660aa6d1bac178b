"""The vendored MIMIC-IV demo (MEDS) and the whole converter path on it."""

import numpy as np
import pandas as pd
import polars as pl
import pytest

from survbehrt.data import events_to_survival, from_events
from survbehrt.datasets import load_mimic_iv_demo


@pytest.fixture(scope="module")
def demo():
    return load_mimic_iv_demo("polars")


def test_the_three_forms_hold_the_file_described_by_its_notice(demo):
    path = load_mimic_iv_demo("path")
    assert (path.parent / "NOTICE.md").read_text().count("Open Database License") == 1
    raw = pl.read_parquet(path)
    assert raw.columns == ["subject_id", "time", "code", "table", "value"]
    # the numbers the NOTICE states
    assert demo.height == 916_166 and demo["subject_id"].n_unique() == 100
    assert int((demo["code"] == "MEDS_DEATH").sum()) == 31
    assert demo.columns == ["subject_id", "time", "code", "table", "numeric_value"]
    assert demo["numeric_value"].equals(raw["value"].alias("numeric_value"), null_equal=True)
    frame = load_mimic_iv_demo()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == demo.columns
    assert frame["code"].tolist()[:1000] == demo["code"].head(1000).to_list()
    assert frame["time"].isna().sum() == demo["time"].null_count() == 100
    with pytest.raises(ValueError, match="as_frame"):
        load_mimic_iv_demo("numpy")


def test_every_event_of_the_demo_is_accounted_for(demo):
    X = from_events(load_mimic_iv_demo("path"))
    assert len(X) == 100 and X.index.is_monotonic_increasing
    assert all(len(s) == 1 and s[0] in ("GENDER//F", "GENDER//M") for s in X["static"])
    # expected from pandas, independently: timed, non-birth rows, repeats of a code at
    # one timestamp of one subject removed (first kept)
    events = load_mimic_iv_demo()
    timed = events[events["time"].notna() & (events["code"] != "MEDS_BIRTH")]
    kept = timed.drop_duplicates(["subject_id", "time", "code"], keep="first")
    counts = X.attrs["event_counts"]
    assert counts["used"] == len(kept) == sum(len(v) for c in X["codes"] for v in c)
    assert counts["duplicates"] == len(timed) - len(kept)
    n_values = sum(int(np.isfinite(v).sum()) for r in X["values"] for v in map(np.asarray, r))
    assert n_values == kept["numeric_value"].notna().sum()
    assert X["codes"].map(len).tolist() == (
        kept.groupby("subject_id")["time"].nunique().sort_index().tolist()
    )


def _admitted(demo):
    """Prediction times 24 hours after each subject's first hospital admission."""
    return (
        demo.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION"))
        .group_by("subject_id")
        .agg(pl.col("time").min())
        .select("subject_id", prediction_time=pl.col("time") + pl.duration(hours=24))
    )


def test_death_labels_24_hours_after_the_first_admission(demo):
    admitted = _admitted(demo)
    X, y = events_to_survival(demo, admitted, "MEDS_DEATH")
    assert len(X) == len(y) and X.index.names == ["subject_id", "prediction_time"]
    deaths = demo.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", "time")
    died = dict(zip(deaths["subject_id"].to_list(), deaths["time"].to_list()))
    for (subject, pt), event, time in zip(X.index, y["event"], y["time"]):
        if event:
            assert (died[subject] - pt.to_pydatetime()).total_seconds() / 86400 / 365.25 == (
                pytest.approx(time, abs=1e-9)
            )
        else:  # a death is a record: no death can lie beyond the censoring time
            assert subject not in died


@pytest.mark.filterwarnings("ignore:.*longer than max_length")  # a short max_length: fast
def test_estimator_fits_the_arrow_backed_x_as_the_same_lists(demo):
    """The whole path on the demo: from_events' Arrow-backed X, a tiny survival model;
    the same X as Python lists gives the same predictions."""
    from helpers import tiny_estimator

    admitted = _admitted(demo)
    X, y = events_to_survival(demo, admitted, "MEDS_DEATH")
    assert isinstance(X["codes"].dtype, pd.ArrowDtype)
    lists = X.copy()
    for name in ("codes", "ages", "static", "values"):
        lists[name] = pd.Series(X[name].tolist(), index=X.index, dtype=object)
    a = tiny_estimator(max_length=64).fit(X, y)
    b = tiny_estimator(max_length=64).fit(lists, y)
    risk = a.predict(X)
    assert np.isfinite(risk).all() and len(risk) == len(X)
    np.testing.assert_allclose(risk, b.predict(lists), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(risk, a.predict(lists), rtol=1e-5, atol=1e-6)
