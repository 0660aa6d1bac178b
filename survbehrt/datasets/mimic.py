"""Real data shipped with the package: the MIMIC-IV demo in MEDS.

The file lies in ``survbehrt/datasets/data/mimic_iv_demo_meds/`` beside its ``NOTICE.md``
(source, citation and licence). It is under the Open Database License (ODbL) 1.0, not
the package's GPL licence: you may share and adapt it with attribution, and any adapted
database you publish must also be under the ODbL (share-alike).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["load_mimic_iv_demo"]

_FOLDER = "data/mimic_iv_demo_meds"


def _demo_path() -> Path:
    return Path(str(resources.files("survbehrt.datasets").joinpath(_FOLDER, "events.parquet")))


def load_mimic_iv_demo(as_frame="pandas"):
    """The MIMIC-IV Clinical Database Demo as a MEDS event table (100 patients).

    916,166 rows of 100 de-identified patients (the openly available teaching subset of
    MIMIC-IV, dates shifted into the 22nd century): admissions, diagnoses, procedures,
    medications, laboratory results and vital signs, about 9,000 rows per patient. Each
    patient has a ``MEDS_BIRTH`` row and a static ``GENDER//F`` or ``GENDER//M`` row
    (no time); 31 have ``MEDS_DEATH``. It goes into
    :func:`survbehrt.data.from_events` and :func:`survbehrt.data.survival_labels` as is.

    **Licence.** The data are under the Open Database License (ODbL) 1.0, not the
    package's licence: attribute them (below), and publish any database you derive
    from them under the ODbL too (share-alike). The ``NOTICE.md`` beside the file
    gives the details; keep it with any copy.

    Source: van de Water et al. (2025), *MIMIC-IV demo data in the Medical Event Data
    Standard (MEDS)* (version 0.0.1), PhysioNet, doi:10.13026/t2y8-ea41; derived from
    the MIMIC-IV Clinical Database Demo (Johnson et al., PhysioNet).

    Parameters
    ----------
    as_frame : {"pandas", "polars", "path"}, default="pandas"
        Return a pandas DataFrame, a polars DataFrame, or the path of the parquet file
        (whose numeric-value column is spelled ``value``, as shipped).

    Returns
    -------
    pandas.DataFrame, polars.DataFrame or pathlib.Path
        Columns ``subject_id`` (int64), ``time`` (datetime, microseconds; null for the
        static rows), ``code`` (str), ``table`` (str) and ``numeric_value`` (float32,
        null where a code has no value), in the file's order (by subject, then time).

    Examples
    --------
    >>> from survbehrt.datasets import load_mimic_iv_demo
    >>> events = load_mimic_iv_demo("polars")
    >>> events.shape, events["subject_id"].n_unique()
    ((916166, 5), 100)
    >>> int((events["code"] == "MEDS_DEATH").sum())
    31
    """
    if as_frame not in ("pandas", "polars", "path"):
        raise ValueError(f"as_frame must be 'pandas', 'polars' or 'path'; got {as_frame!r}.")
    path = _demo_path()
    if as_frame == "path":
        return path
    import polars as pl

    # MEDS names the value column numeric_value; this copy spells it value.
    events = pl.read_parquet(path).rename({"value": "numeric_value"})
    if as_frame == "polars":
        return events
    import pandas as pd

    return pd.DataFrame(
        {
            "subject_id": events["subject_id"].to_numpy(),
            "time": events["time"].to_numpy(),
            "code": events["code"].to_numpy(),
            "table": events["table"].to_numpy(),
            "numeric_value": events["numeric_value"].to_numpy(),
        }
    )
