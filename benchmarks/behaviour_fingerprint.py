"""A fingerprint of what the estimators compute, to check a refactoring changes nothing.

Run: ``python benchmarks/behaviour_fingerprint.py OUT_DIR`` (about a minute on one CPU),
then ``python benchmarks/behaviour_fingerprint.py --compare BEFORE_DIR AFTER_DIR``.

On fixed seeds and a small ``make_synthetic_ehr`` cohort it fits four models with a small
architecture and every other parameter at its default: the survival estimator
(``wide="joint"``), the survival estimator with ``wide=None``, a ``BEHRTPretrainer``, and
the survival estimator with ``strategy="lora"`` from that pretrainer. For each it writes
the predictions (``predict``), the survival and cumulative-hazard curves at
``unique_times_``, the landmark risks (``predict_visit_risks``), the pretrainer's
``transform`` embeddings, the fitted ``wide_alpha_`` and the training
history's losses to ``OUT_DIR/fingerprint.npz``, and the files ``save`` wrote (kept in
``OUT_DIR``) with two SHA-256 each to ``OUT_DIR/fingerprint.json``: of the file, and of
its content less the training history's epoch durations (wall-clock seconds, the one
thing that differs between two runs of the same code).

``--compare A B`` prints, for every array, the largest absolute difference between the
two runs (``equal`` when the arrays are identical bit for bit), whether every saved file
has the same content hash, and also loads A's saved files with the code on the path and checks
that they predict B's arrays exactly (files written before a change must still load).
Exits non-zero on any difference.
"""

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr

SMALL = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=3, random_state=0)
SURVIVAL = {
    "default": {},
    "no_wide": {"wide": None},
    "lora": {"strategy": "lora"},  # from the fitted pretrainer
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drop_durations(obj):
    if isinstance(obj, dict):
        return {k: _drop_durations(v) for k, v in obj.items() if k != "dur"}
    if isinstance(obj, list):
        return [_drop_durations(v) for v in obj]
    return obj


def _content_sha256(path: Path) -> str:
    """SHA-256 of a saved file's content less the epochs' wall-clock durations.

    The file's bytes differ from run to run only by the training history's ``dur``
    (seconds per epoch); everything else (parameters, fitted attributes, components,
    module arguments, weights) is hashed: the metadata as canonical JSON, each tensor
    by name, dtype, shape and bytes.
    """
    import torch

    saved = torch.load(path, weights_only=True)
    digest = hashlib.sha256()
    meta = _drop_durations(json.loads(saved["metadata"]))
    digest.update(json.dumps([saved["format"], saved["format_version"], meta],
                             sort_keys=True).encode())
    for name, tensor in sorted(saved["state_dict"].items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _hashes(path: Path) -> dict:
    return {"file": _sha256(path), "content": _content_sha256(path)}


def _survival_arrays(name: str, est, X) -> dict:
    out = {
        f"{name}/predict": est.predict(X),
        f"{name}/survival": est.predict_survival_function(X, return_array=True),
        f"{name}/cumhaz": est.predict_cumulative_hazard_function(X, return_array=True),
        f"{name}/visit_risks": np.concatenate(est.predict_visit_risks(X)),
        f"{name}/unique_times": est.unique_times_,
        f"{name}/cuts": est.time_grid_.cuts_,
        f"{name}/valid_cindex": np.array(est.history_[:, "valid_cindex"], dtype=float),
        f"{name}/train_loss": np.array(est.history_[:, "train_loss"], dtype=float),
    }
    for attr in ("wide_alpha_",):
        value = getattr(est, attr)
        out[f"{name}/{attr}"] = np.array(np.nan if value is None else value, dtype=float)
    return out


def fingerprint(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore", UserWarning)
    X, y, _ = make_synthetic_ehr(n_patients=240, random_state=0)
    X_new, _, _ = make_synthetic_ehr(n_patients=60, random_state=1)
    arrays, hashes = {}, {}

    pre = BEHRTPretrainer(**SMALL).fit(X)
    arrays["pretrainer/transform"] = pre.transform(X_new)
    arrays["pretrainer/train_loss"] = np.array(pre.history_[:, "train_loss"], dtype=float)
    pre.save(out_dir / "pretrainer.pt")
    hashes["pretrainer.pt"] = _hashes(out_dir / "pretrainer.pt")

    for name, params in SURVIVAL.items():
        extra = {"pretrained": pre} if name == "lora" else {}
        est = BEHRTSurvivalEstimator(**SMALL, **params, **extra).fit(X, y)
        arrays.update(_survival_arrays(name, est, X_new))
        est.save(out_dir / f"{name}.pt")
        hashes[f"{name}.pt"] = _hashes(out_dir / f"{name}.pt")

    np.savez(out_dir / "fingerprint.npz", **arrays)
    (out_dir / "fingerprint.json").write_text(json.dumps({"sha256": hashes}, indent=1) + "\n")
    for key, value in sorted(arrays.items()):
        value = np.asarray(value, dtype=float)
        print(f"{key:28s} shape {str(value.shape):10s} sum {np.nansum(value):+.10e}")
    for key, value in sorted(hashes.items()):
        print(f"{key:28s} sha256 file {value['file'][:16]}… content {value['content'][:16]}…")


def _max_diff(a, b) -> str:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shapes differ {a.shape} vs {b.shape}"
    if np.array_equal(a, b, equal_nan=True):
        return "equal"
    return f"max abs diff {np.nanmax(np.abs(a.astype(float) - b.astype(float))):.3e}"


def compare(before: Path, after: Path) -> bool:
    a, b = np.load(before / "fingerprint.npz"), np.load(after / "fingerprint.npz")
    same = set(a.files) == set(b.files)
    if not same:
        print(f"arrays differ: only before {set(a.files) - set(b.files)}, "
              f"only after {set(b.files) - set(a.files)}")
    for key in sorted(set(a.files) & set(b.files)):
        verdict = _max_diff(a[key], b[key])
        same &= verdict == "equal"
        print(f"{key:28s} {verdict}")
    ha = json.loads((before / "fingerprint.json").read_text())["sha256"]
    hb = json.loads((after / "fingerprint.json").read_text())["sha256"]
    for key in sorted(ha):
        # the file's bytes hold the epochs' durations: only its content must match
        match = ha[key]["content"] == hb.get(key, {}).get("content")
        same &= match
        file_match = ha[key]["file"] == hb.get(key, {}).get("file")
        print(f"{key:28s} content sha256 {'match' if match else 'DIFFER'}"
              f" (file bytes {'match' if file_match else 'differ: epoch durations'})")
    # the files written by `before`, read by the code on the path, predict `after`'s arrays
    X_new, _, _ = make_synthetic_ehr(n_patients=60, random_state=1)
    loaded = BEHRTPretrainer.load(before / "pretrainer.pt")
    verdict = _max_diff(loaded.transform(X_new), b["pretrainer/transform"])
    same &= verdict == "equal"
    print(f"{'load(before) pretrainer':28s} transform {verdict}")
    for name in SURVIVAL:
        est = BEHRTSurvivalEstimator.load(before / f"{name}.pt")
        for what, value in (("predict", est.predict(X_new)),
                            ("survival", est.predict_survival_function(X_new, return_array=True))):
            verdict = _max_diff(value, b[f"{name}/{what}"])
            same &= verdict == "equal"
            print(f"{'load(before) ' + name:28s} {what} {verdict}")
    print("IDENTICAL" if same else "DIFFERENT")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    if args.out_dir is None:
        parser.error("give OUT_DIR, or --compare BEFORE AFTER")
    fingerprint(args.out_dir)


if __name__ == "__main__":
    main()
