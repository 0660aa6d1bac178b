import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from survbehrt.data import (
    BucketBatchSampler,
    EHRDataset,
    EHRTokenizer,
    collate_tokens,
    padding_fraction,
)
from survbehrt.data.batching import dataset_lengths, identity_collate

from helpers import random_cohort


def tokens(n=60, seed=0, max_length=32):
    X, y = random_cohort(n=n, seed=seed)
    return EHRTokenizer(max_length=max_length).fit(X).transform(X), y


@pytest.mark.filterwarnings("ignore:.*longer than max_length")
def test_collate_matches_per_patient_arrays():
    X, _ = random_cohort(n=60, seed=0)
    X["values"] = [[[float(i)] * len(v) for v in visits] for i, visits in enumerate(X["codes"])]
    t = EHRTokenizer(max_length=12).fit(X).transform(X)
    idx = [7, 3, 41]
    assert not t.subset(idx).visit_complete.all()  # the batch holds incomplete visits
    batch = collate_tokens(t, idx)
    L = int(t.lengths[idx].max())
    V = int(t.n_visits[idx].max())
    assert batch["codes"].shape == (3, L) and batch["visit_mask"].shape == (3, V)
    for r, i in enumerate(idx):
        p = t.patient(i)
        n = len(p["codes"])
        for name in ("codes", "age_bins", "visits", "positions", "time_bins", "value_bins"):
            assert batch[name][r, :n].tolist() == p[name].tolist()
            assert (batch[name][r, n:] == 0).all()
        assert batch["attention_mask"][r].sum() == n and batch["attention_mask"][r, :n].all()
        nv = len(p["visit_times"])
        assert batch["visit_mask"][r].sum() == nv
        np.testing.assert_allclose(batch["visit_times"][r, :nv].numpy(), p["visit_times"])
        assert batch["visit_complete"][r, :nv].tolist() == p["visit_complete"].tolist()
        assert not batch["visit_complete"][r, nv:].any()
    assert batch["value_bins"].any() and batch["value_bins"].dtype == torch.long and batch["visit_complete"].dtype == torch.bool
    assert batch["codes"].dtype == torch.long and batch["attention_mask"].dtype == torch.bool


def test_bucket_sampler_covers_every_index_once_and_reshuffles():
    lengths = np.random.default_rng(0).integers(3, 100, size=1003)
    s = BucketBatchSampler(lengths, batch_size=32, bucket_chunks=4, seed=0)
    e1, e2 = s.batches(), s.batches()
    for epoch in (e1, e2):
        flat = np.concatenate(epoch)
        assert sorted(flat.tolist()) == list(range(1003))
        assert len(epoch) == len(s) and all(len(b) <= 32 for b in epoch)
    assert not all(np.array_equal(a, b) for a, b in zip(e1, e2))
    # bucketing lowers padding against plain random batches of the same size
    rng = np.random.default_rng(1)
    perm = rng.permutation(1003)
    random_batches = [perm[i : i + 32] for i in range(0, 1003, 32)]
    assert padding_fraction(lengths, e1) < padding_fraction(lengths, random_batches) / 2


def test_bucket_sampler_seeded_and_sorted_without_shuffle():
    lengths = np.arange(50)[::-1]
    a = BucketBatchSampler(lengths, 8, seed=3).batches()
    b = BucketBatchSampler(lengths, 8, seed=3).batches()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = BucketBatchSampler(lengths, 8, shuffle=False).batches()
    assert np.array_equal(np.concatenate(c), np.argsort(lengths, kind="stable"))


def test_dataloader_with_subset_and_targets():
    t, y = tokens()
    ds = EHRDataset(t, {"event": y["event"], "time": y["time"]})
    sub = Subset(ds, list(range(10, 40)))
    lengths = dataset_lengths(sub)
    assert lengths.tolist() == t.lengths[10:40].tolist()
    loader = DataLoader(sub, batch_sampler=BucketBatchSampler(lengths, 8, seed=0),
                        collate_fn=identity_collate)
    seen = []
    for X, yb in loader:
        assert X["codes"].shape[0] == yb["time"].shape[0]
        seen.extend(yb["time"].tolist())
    np.testing.assert_allclose(sorted(seen), sorted(y["time"][10:40].astype(np.float32)))


def test_dataset_length_mismatch():
    t, y = tokens(n=10)
    import pytest

    with pytest.raises(ValueError, match="target 'time' has 9 rows for 10 patients"):
        EHRDataset(t, {"time": y["time"][:9]})


@pytest.mark.parametrize("counts", [[3, 0, 1, 4], [0, 0], [], [5], [1, 1, 1]])
def test_group_arange_is_the_positions_within_each_group(counts):
    # the helper every flat-array gather builds on (tokenizer, batching, generators): from
    # its definition, a loop over the groups
    from survbehrt.data._flat import group_arange

    expected = [i for c in counts for i in range(c)]
    got = group_arange(np.asarray(counts, dtype=np.int32))
    assert got.dtype == np.int64
    assert got.tolist() == expected
