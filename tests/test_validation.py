import re

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from survbehrt.data import check_ehr_frame, check_survival_y, flatten_ehr


def frame(**overrides):
    data = {
        "codes": [[["A"], ["B", "C"]], [["A", "D"]], [["E"], ["F"], ["A"]]],
        "ages": [[50.0, 51.0], [30.0], [60.0, 60.0, 62.5]],
        "index_age": [51.5, 30.0, 63.0],
    }
    data.update(overrides)
    return pd.DataFrame(data, index=["p0", "p1", "p2"])


def test_valid_frame_flattens():
    flat = flatten_ehr(frame())
    assert flat.codes == ["A", "B", "C", "A", "D", "E", "F", "A"]
    assert flat.visit_lengths.tolist() == [1, 2, 2, 1, 1, 1]
    assert flat.n_visits.tolist() == [2, 1, 3]
    assert flat.index_age.tolist() == [51.5, 30.0, 63.0]


def test_index_age_defaults_to_last_visit():
    X = frame().drop(columns="index_age")
    assert flatten_ehr(X).index_age.tolist() == [51.0, 30.0, 62.5]


def test_numpy_cells_accepted():
    X = frame()
    X["codes"] = [np.array([np.array(v, dtype=object) for v in p], dtype=object) for p in X["codes"]]
    X["ages"] = [np.asarray(a) for a in X["ages"]]
    assert flatten_ehr(X).codes == flatten_ehr(frame()).codes


def _row_col(row, label, column):
    return re.escape(f"X row {row} (index {label!r}), column {column!r}")


#: Frames with one bad cell: (column overrides, exception, row, column).
BAD_FRAMES = [
    ({"codes": [[["A"], ["B", "C"]], [], [["E"], ["F"], ["A"]]]}, ValueError, 1, "codes"),
    ({"codes": [[["A"], []], [["A", "D"]], [["E"], ["F"], ["A"]]]}, ValueError, 0, "codes"),
    ({"codes": [[["A"], ["B", 3]], [["A", "D"]], [["E"], ["F"], ["A"]]]}, TypeError, 0, "codes"),
    ({"codes": [[["A"], ["B"]], [["A", "D"]], [["E"], ["F"], [""]]]}, ValueError, 2, "codes"),
    ({"codes": [[["A"], ["B"]], "A D", [["E"], ["F"], ["A"]]]}, TypeError, 1, "codes"),
    ({"codes": [[["A"], "B"], [["A"]], [["E"], ["F"], ["A"]]]}, TypeError, 0, "codes"),
    ({"ages": [[50.0, 51.0], [30.0, 31.0], [60.0, 60.0, 62.5]]}, ValueError, 1, "ages"),
    ({"ages": [[50.0, 51.0], [30.0], [60.0, 59.0, 62.5]]}, ValueError, 2, "ages"),
    ({"ages": [[50.0, np.nan], [30.0], [60.0, 60.0, 62.5]]}, ValueError, 0, "ages"),
    ({"ages": [[50.0, 51.0], [np.inf], [60.0, 60.0, 62.5]]}, ValueError, 1, "ages"),
    ({"ages": [[50.0, 51.0], [-1.0], [60.0, 60.0, 62.5]]}, ValueError, 1, "ages"),
    ({"ages": [[50.0, 51.0], ["x"], [60.0, 60.0, 62.5]]}, TypeError, 1, "ages"),
    ({"index_age": [51.5, 29.0, 63.0]}, ValueError, 1, "index_age"),
    ({"index_age": [51.5, 30.0, np.nan]}, ValueError, 2, "index_age"),
]


@pytest.mark.parametrize("overrides, exc, row, column", BAD_FRAMES)
def test_bad_frame_names_row_and_column(overrides, exc, row, column):
    X = frame(**overrides)
    with pytest.raises(exc, match=_row_col(row, X.index[row], column)):
        check_ehr_frame(X)


@pytest.mark.parametrize("missing", ["codes", "ages"])
def test_missing_column(missing):
    with pytest.raises(ValueError, match=f"missing the required column '{missing}'"):
        check_ehr_frame(frame().drop(columns=missing))


def test_require_index_age():
    with pytest.raises(ValueError, match="index_age"):
        check_ehr_frame(frame().drop(columns="index_age"), require_index_age=True)


def test_not_a_frame():
    with pytest.raises(TypeError, match="DataFrame"):
        check_ehr_frame([[["A"]]])


def test_empty_frame():
    with pytest.raises(ValueError, match="no rows"):
        check_ehr_frame(frame().iloc[:0])


def test_y_ok_any_field_names():
    y = np.array([(True, 1.0), (False, 0.0)], dtype=[("dead", "?"), ("years", "<f8")])
    event, time = check_survival_y(y, n_samples=2)
    assert event.tolist() == [True, False] and time.tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "time, match",
    [([1.0, np.nan, 2.0], r"y row 1, field 'time'.*not finite"),
     ([1.0, 2.0, np.inf], r"y row 2, field 'time'.*not finite"),
     ([1.0, -0.5, 2.0], r"y row 1, field 'time'.*negative")],
)
def test_y_bad_times(time, match):
    y = np.array(list(zip([True, False, True], time)), dtype=[("event", "?"), ("time", "<f8")])
    with pytest.raises(ValueError, match=match):
        check_survival_y(y)


def test_y_length_mismatch():
    with pytest.raises(ValueError, match="y has 2 rows but X has 3"):
        check_survival_y(Surv.from_arrays([True, False], [1.0, 2.0]), n_samples=3)


def test_y_all_censored():
    y = Surv.from_arrays([False, False], [1.0, 2.0])
    with pytest.raises(ValueError, match="no events"):
        check_survival_y(y)
    assert check_survival_y(y, require_events=False)[0].sum() == 0


def test_y_not_structured():
    with pytest.raises(TypeError, match="structured array"):
        check_survival_y(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="boolean event indicator"):
        check_survival_y(np.array([(1.0, 1.0)], dtype=[("e", "<f8"), ("t", "<f8")]))


# ---------------------------------------------------------------- static and values


def test_static_and_values_flatten():
    X = frame(static=[["SEX//F"], None, []],
              values=[[[1.5], [np.nan, 2]], None, [[None], [3.0], [np.nan]]])
    flat = flatten_ehr(X)
    assert flat.static_codes == ["SEX//F"] and flat.n_static.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(flat.values, [1.5, np.nan, 2.0, np.nan, np.nan, np.nan, 3.0, np.nan])
    plain = flatten_ehr(frame())
    assert plain.values is None and plain.n_static is None and plain.static_counts.tolist() == [0, 0, 0]


#: Bad static or values cells: (overrides, exception, row, column, message).
BAD_STATIC_OR_VALUES = [
    ({"static": [["A"], "SEX//F", None]}, TypeError, 1, "static", "list of static codes"),
    ({"static": [["A"], [3], None]}, TypeError, 1, "static", "must be strings"),
    ({"static": [None, None, ["A", ""]]}, ValueError, 2, "static", "empty code"),
    ({"values": [[[1.0], [2.0, 3.0]], [[1.0]], [[1.0], [2.0]]]}, ValueError, 2, "values",
     "2 visits of values for 3 visits"),
    ({"values": [[[1.0], [2.0]], None, None]}, ValueError, 0, "values",
     "visit 1 has 1 values for 2 codes"),
    ({"values": [None, [[1.0, "high"]], None]}, TypeError, 1, "values",
     "visit 0: value 'high' of type str is not a number"),
    ({"values": [None, None, [[1.0], [None], [{"x": 1}]]]}, TypeError, 2, "values",
     "visit 2: value {'x': 1} of type dict"),
    ({"values": [None, [[1.0, np.inf]], None]}, ValueError, 1, "values", "infinite"),
    ({"values": [None, 5.0, None]}, TypeError, 1, "values", "list of visits"),
    ({"values": [[[1.0], 2.0], None, None]}, TypeError, 0, "values", "visit 1 has a float"),
]


@pytest.mark.parametrize("overrides, exc, row, column, message", BAD_STATIC_OR_VALUES)
def test_bad_static_or_values_name_row_and_column(overrides, exc, row, column, message):
    X = frame(**overrides)
    with pytest.raises(exc, match=_row_col(row, X.index[row], column) + ".*" + re.escape(message)):
        check_ehr_frame(X)


def test_extra_columns_ignored_and_order_free():
    X = frame()
    other = X[["index_age", "ages", "codes"]].assign(note="free text", subject_id=[1, 2, 3])
    a, b = flatten_ehr(X), flatten_ehr(other)
    assert a.codes == b.codes and a.index_age.tolist() == b.index_age.tolist()
    from survbehrt.data.validation import ehr_columns

    assert ehr_columns(other).tolist() == ["index_age", "ages", "codes"]


def test_cut_equals_flattening_the_cut_frame():
    X = frame(static=[["S"], None, ["T", "U"]], values=[[[1.0], [2.0, 3.0]], None, [[4.0], [5.0], [6.0]]])
    flat = flatten_ehr(X)
    cut = flat.cut([2, 0, 2], [2, 1, 3])
    ref = flatten_ehr(pd.DataFrame({
        "codes": [[["E"], ["F"]], [["A"]], [["E"], ["F"], ["A"]]],
        "ages": [[60.0, 60.0], [50.0], [60.0, 60.0, 62.5]],
        "index_age": [63.0, 51.5, 63.0],  # the full row's prediction time
        "static": [["T", "U"], ["S"], ["T", "U"]],
        "values": [[[4.0], [5.0]], [[1.0]], [[4.0], [5.0], [6.0]]],
    }))
    assert cut.codes == ref.codes and cut.static_codes == ref.static_codes
    for name in ("visit_lengths", "visit_ages", "n_visits", "index_age", "values", "n_static"):
        np.testing.assert_array_equal(getattr(cut, name), getattr(ref, name))


def test_multiindex_rows_named_in_errors():
    X = frame(values=[None, [["x", 1.0]], None])
    X.index = pd.MultiIndex.from_tuples([(1, "2020-01-01"), (1, "2021-06-01"), (2, "2020-03-01")],
                                        names=["subject_id", "prediction_time"])
    with pytest.raises(TypeError, match=_row_col(1, (1, "2021-06-01"), "values")):
        check_ehr_frame(X)


# ---------------------------------------------------------------- Arrow-backed frames


def _flat_fields(flat):
    """A FlatEHR's content (codes as strings: the integer ids may be numbered differently)."""
    out = {"codes": flat.codes, "static_codes": flat.static_codes}
    for name in ("visit_lengths", "visit_ages", "n_visits", "index_age", "values", "n_static"):
        out[name] = getattr(flat, name)
    return out


def assert_same_flat(a, b):
    fa, fb = _flat_fields(a), _flat_fields(b)
    assert fa["codes"] == fb["codes"] and fa["static_codes"] == fb["static_codes"]
    for name in ("visit_lengths", "visit_ages", "n_visits", "index_age", "values", "n_static"):
        if fa[name] is None or fb[name] is None:
            assert fa[name] is None and fb[name] is None, name
        else:
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)  # NaN == NaN
    assert len(set(a.code_names.tolist())) == len(a.code_names)  # no repeated strings


def _random_frame(seed):
    """A random cohort with static codes and values: missing rows, visits and values."""
    from test_tokenizer import with_static_and_values

    from helpers import random_cohort

    rng = np.random.default_rng(seed)
    X, _ = random_cohort(n=25, seed=seed)
    X = with_static_and_values(X, seed=seed)
    X["static"] = [None if rng.random() < 0.2 else s for s in X["static"]]
    X["values"] = [
        None if rng.random() < 0.2
        else [None if rng.random() < 0.2 else [None if np.isnan(x) and rng.random() < 0.5 else x
                                              for x in visit] for visit in row]
        for row in X["values"]
    ]
    return X


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dictionary", [False, True])
def test_arrow_frame_flattens_like_the_same_lists(seed, dictionary):
    from survbehrt.data._arrow import is_arrow_frame

    from helpers import as_arrow

    X = _random_frame(seed)
    A = as_arrow(X, dictionary=dictionary)
    assert is_arrow_frame(A) and not is_arrow_frame(X)
    a, b = flatten_ehr(A), flatten_ehr(X)
    assert_same_flat(a, b)
    # the same rows cut the same way, sliced and reordered frames too
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(X), size=10)
    keep = [int(rng.integers(1, b.n_visits[r] + 1)) for r in rows]
    assert_same_flat(a.cut(rows, keep), b.cut(rows, keep))
    order = rng.permutation(len(X))[:15]
    assert_same_flat(flatten_ehr(A.iloc[order]), flatten_ehr(X.iloc[order]))
    # several chunks (pd.concat) with their own dictionaries
    both = pd.concat([A.iloc[:10], A.iloc[10:]])
    assert_same_flat(flatten_ehr(both), b)


def _arrow_or_none(overrides):
    """``frame(**overrides)`` with Arrow-backed columns, or None when Arrow cannot hold
    its cells as typed lists (a string for a list, mixed types)."""
    import pyarrow as pa

    from survbehrt.data._arrow import is_arrow_frame

    from helpers import as_arrow

    try:
        X = as_arrow(frame(**overrides))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return X if is_arrow_frame(X) else None


#: The bad cells above that an Arrow-backed frame can hold (the others cannot be built).
BAD_ARROW = [
    case for case in [c + ("",) for c in BAD_FRAMES] + BAD_STATIC_OR_VALUES
    if _arrow_or_none(case[0]) is not None
]


@pytest.mark.parametrize("overrides, exc, row, column, message", BAD_ARROW)
def test_bad_arrow_frame_names_row_and_column(overrides, exc, row, column, message):
    """The same bad cells in an Arrow-backed frame raise the same errors."""
    X = _arrow_or_none(overrides)
    with pytest.raises(exc, match=_row_col(row, X.index[row], column) + ".*" + re.escape(message)):
        check_ehr_frame(X)


def test_bad_arrow_cells_only_arrow_can_hold():
    """Nulls inside Arrow lists: a null code, visit or age is an error."""
    import pyarrow as pa

    X = frame()
    X["codes"] = pd.Series(pd.arrays.ArrowExtensionArray(
        pa.array([[["A"], ["B", "C"]], [["A", None]], [["E"], ["F"], ["A"]]])), index=X.index)
    X["ages"] = pd.Series(pd.arrays.ArrowExtensionArray(
        pa.array([[50.0, 51.0], [30.0], [60.0, 60.0, 62.5]])), index=X.index)
    with pytest.raises(TypeError, match=_row_col(1, "p1", "codes") + ".*holds None"):
        check_ehr_frame(X)
    X["codes"] = pd.Series(pd.arrays.ArrowExtensionArray(
        pa.array([[["A"], ["B", "C"]], [["A"]], [["E"], None, ["A"]]])), index=X.index)
    with pytest.raises(TypeError, match=_row_col(2, "p2", "codes") + ".*visit 1 is a NoneType"):
        check_ehr_frame(X)
    X["codes"] = pd.Series(pd.arrays.ArrowExtensionArray(
        pa.array([[["A"], ["B", "C"]], [["A"]], [["E"], ["F"], ["A"]]])), index=X.index)
    X["ages"] = pd.Series(pd.arrays.ArrowExtensionArray(
        pa.array([[50.0, 51.0], [None], [60.0, 60.0, 62.5]])), index=X.index)
    with pytest.raises(ValueError, match=_row_col(1, "p1", "ages") + ".*must be finite"):
        check_ehr_frame(X)
