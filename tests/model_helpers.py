"""Shared helpers of the model tests: tiny configs and hand-built / random batches."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from survbehrt.model import CLS_ID, N_SPECIAL, SEP_ID, BEHRTConfig

VOCAB_SIZE = 30
N_AGE_BINS = 20
N_TIME_BINS = 10
TOKEN_KEYS = ("codes", "age_bins", "visits", "positions", "time_bins", "attention_mask")


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run torch ops on ``n`` intra-op threads, restoring the previous setting after.

    The test models are tiny: one thread is as fast, and it keeps the suite's run
    time stable on a busy machine (OpenMP workers spin badly when cores are shared).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int = 0) -> None:
    """Seed Python's and torch's global generators (numpy draws use explicit Generators)."""
    random.seed(seed)
    torch.manual_seed(seed)


def tiny_config(**overrides) -> BEHRTConfig:
    """A very small, dropout-free configuration for fast deterministic tests."""
    fields = dict(
        vocab_size=VOCAB_SIZE,
        n_age_bins=N_AGE_BINS,
        n_time_bins=N_TIME_BINS,
        max_visits=16,
        max_position=64,
        embedding_dim=16,
        num_layers=2,
        num_heads=2,
        ff_dim=32,
        dropout=0.0,
        attention_dropout=0.0,
    )
    fields.update(overrides)
    return BEHRTConfig(**fields)


def make_batch(patients, pad_to=None, num_visits=None):
    """Build a padded batch following docs/dev/interfaces.md.

    Parameters
    ----------
    patients : list of list of list of int
        Per patient, per visit, the code ids (``>= N_SPECIAL``).
    pad_to : int, optional
        Token length ``L`` (default: the longest patient).
    num_visits : int, optional
        Visit slots ``V`` (default: the most visits).

    Returns
    -------
    dict of torch.Tensor
        ``codes, age_bins, visits, positions, time_bins, attention_mask, visit_mask,
        visit_times``.
    """
    rows = []
    for visits in patients:
        codes, vis, ages, times = [], [], [], []
        for v, visit in enumerate(visits):
            tokens = ([CLS_ID] if v == 0 else []) + list(visit) + [SEP_ID]
            codes += tokens
            vis += [v] * len(tokens)
            ages += [min(1 + 2 * v, N_AGE_BINS - 1)] * len(tokens)
            # depends on v only (a fixed prediction time), so appending a visit
            # leaves the earlier visits' inputs unchanged
            times += [max(N_TIME_BINS - 1 - v, 1)] * len(tokens)
        rows.append((codes, vis, ages, times))
    length = max(len(r[0]) for r in rows) if pad_to is None else pad_to
    n_visits = max(len(p) for p in patients) if num_visits is None else num_visits
    b = len(patients)
    out = {k: torch.zeros(b, length, dtype=torch.long) for k in TOKEN_KEYS[:-1]}
    out["attention_mask"] = torch.zeros(b, length, dtype=torch.bool)
    out["visit_mask"] = torch.zeros(b, n_visits, dtype=torch.bool)
    out["visit_times"] = torch.zeros(b, n_visits)
    for i, (codes, vis, ages, times) in enumerate(rows):
        n = len(codes)
        out["codes"][i, :n] = torch.tensor(codes)
        out["visits"][i, :n] = torch.tensor(vis)
        out["age_bins"][i, :n] = torch.tensor(ages)
        out["time_bins"][i, :n] = torch.tensor(times)
        out["positions"][i, :n] = torch.arange(n)
        out["attention_mask"][i, :n] = True
        nv = len(patients[i])
        out["visit_mask"][i, :nv] = True
        out["visit_times"][i, :nv] = 20.0 - torch.arange(nv, dtype=torch.float32)
    return out


def random_patients(rng, n, vocab_size=VOCAB_SIZE, max_visits=4, max_codes=4):
    """``n`` random patients (1..max_visits visits of 1..max_codes distinct codes)."""
    patients = []
    for _ in range(n):
        n_vis = int(rng.integers(1, max_visits + 1))
        patients.append(
            [
                rng.choice(
                    np.arange(N_SPECIAL, vocab_size), int(rng.integers(1, max_codes + 1)), False
                ).tolist()
                for _ in range(n_vis)
            ]
        )
    return patients


def random_batch(n=6, seed=0, **kwargs):
    """A random batch of ``n`` patients (see :func:`random_patients`)."""
    return make_batch(random_patients(np.random.default_rng(seed), n, **kwargs))


def pad_columns(batch, extra):
    """Append ``extra`` padding columns to the token tensors of ``batch``."""
    out = dict(batch)
    for key in TOKEN_KEYS:
        t = batch[key]
        out[key] = torch.cat([t, torch.zeros(t.shape[0], extra, dtype=t.dtype)], dim=1)
    return out


def token_inputs(batch):
    """The token-level keys of ``batch`` only."""
    return {k: batch[k] for k in TOKEN_KEYS}


def embedding_inputs(batch):
    """The token ids of ``batch`` that ``BEHRTEmbeddings`` takes (no mask)."""
    return {k: batch[k] for k in ("codes", "age_bins", "visits", "positions", "time_bins")}


def started_wide_term(tokens, rows, start, vocab_size, **wide):
    """The wide term of every visit of ``rows`` of a module started at the Cox fit ``start``.

    ``wide`` are the module's ``wide_scales`` / ``wide_recency``; returns an array of
    shape (len(rows), V).
    """
    from survbehrt.data.batching import collate_tokens
    from survbehrt.model import BEHRTSurvivalModule

    module = BEHRTSurvivalModule(tiny_config(vocab_size=vocab_size), len(start.baseline),
                                 wide=True, age_mean=start.age_mean, age_scale=start.age_scale,
                                 **wide)
    module.start_from(start.baseline, start.beta, start.gamma)
    batch = collate_tokens(tokens, rows)
    with torch.no_grad():
        return module.wide(batch["codes"], batch["visits"], batch["attention_mask"],
                           batch["visit_mask"].shape[1], batch["index_age"],
                           batch["visit_times"], batch["visit_mask"],
                           timed=batch["age_bins"] > 0).numpy()
