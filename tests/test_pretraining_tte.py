"""Time-to-event pre-training: targets, likelihood, low-rank head, objective names, rate recovery."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from survbehrt.data import EHRTokenizer
from survbehrt.data.batching import collate_tokens
from survbehrt.estimators._training import PretrainingCriterion
from survbehrt.model import BEHRTPretrainingModule, pretraining_loss
from survbehrt.model.tte import TimeToEventHead, objective_parts, tte_rows, tte_targets

from helpers import tiny_pretrainer
from model_helpers import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


def _cohort(n, seed, n_codes=6, max_visits=7):
    """Random histories with distinct visit ages (no two visits of a patient at one age)."""
    rng = np.random.default_rng(seed)
    codes, ages = [], []
    for _ in range(n):
        n_vis = int(rng.integers(1, max_visits + 1))
        codes.append([sorted({f"C{int(c)}" for c in rng.integers(0, n_codes, int(rng.integers(1, 4)))})
                      for _ in range(n_vis)])
        ages.append((40 + np.cumsum(rng.uniform(0.05, 2.0, n_vis))).tolist())
    return pd.DataFrame({"codes": codes, "ages": ages})


def _poisson_cohort(n, rate, seed, other_rate=2.0, years=10.0):
    """Code "A" recurs at ``rate`` per year, other visits ("B" or "C") at ``other_rate``.

    The time from any visit to the next "A" is exponential with rate ``rate`` (visits
    are a Poisson process independent of it), censored at the last visit.
    """
    rng = np.random.default_rng(seed)
    codes, ages = [], []
    for _ in range(n):
        a_times = np.cumsum(rng.exponential(1 / rate, 60))
        o_times = np.cumsum(rng.exponential(1 / other_rate, 120))
        a_times, o_times = a_times[a_times < years], o_times[o_times < years]
        times = np.concatenate([a_times, o_times])
        labels = ["A"] * len(a_times) + [str(rng.choice(["B", "C"])) for _ in o_times]
        order = np.argsort(times)
        codes.append([[labels[i]] for i in order])
        ages.append((30.0 + times[order]).tolist())
    return pd.DataFrame({"codes": codes, "ages": ages})


# --------------------------------------------------------------------------- objective names


def test_objective_parts_combine_and_keep_old_values():
    assert objective_parts("both") == ("mlm", "next_visit")
    assert objective_parts("mlm") == ("mlm",)
    assert objective_parts("tte+mlm") == ("mlm", "tte")
    assert objective_parts(["next_visit", "tte"]) == ("next_visit", "tte")
    assert objective_parts("both+tte") == ("mlm", "next_visit", "tte")
    with pytest.raises(ValueError, match="mlm.*tte"):
        objective_parts("mlm+survival")
    with pytest.raises(ValueError, match="tte_bins"):
        tiny_pretrainer(objective="tte", tte_bins=0).fit(_cohort(10, 0))


# --------------------------------------------------------------------------- targets


def test_tte_targets_match_a_loop_over_the_definition():
    X = _cohort(30, seed=1)
    tok = EHRTokenizer(max_length=512).fit(X)
    tokens = tok.transform(X)
    batch = collate_tokens(tokens, np.arange(len(X)))
    names = ["C0", "C3", "C5"]  # three tasks; other codes map to none
    task_of_code = torch.full((tok.vocab_size_,), -1, dtype=torch.long)
    for k, name in enumerate(names):
        task_of_code[tok.vocabulary_[name]] = k
    time, event = tte_targets(batch["codes"], batch["visits"], batch["age_bins"], batch["visit_times"],
                              batch["visit_mask"], task_of_code, len(names), batch["attention_mask"])
    rows = tte_rows(batch["visit_mask"], batch["visit_complete"])
    n_rows = 0
    for i, (visits, ages) in enumerate(zip(X["codes"], X["ages"])):
        for t in range(len(visits)):
            assert bool(rows[i, t]) == (t < len(visits) - 1)  # the last visit has no target
            if t == len(visits) - 1:
                continue
            n_rows += 1
            for k, name in enumerate(names):
                later = [u for u in range(t + 1, len(visits)) if name in visits[u]]
                stop = later[0] if later else len(visits) - 1
                assert bool(event[i, t, k]) == bool(later)
                assert float(time[i, t, k]) == pytest.approx(ages[stop] - ages[t], abs=1e-4)
    assert int(rows.sum()) == n_rows


# --------------------------------------------------------------------------- likelihood


def _nll_loop(logits, time, event, cuts):
    """Mean over rows of sum_j lambda_j * exposure_j - delta * log lambda_(event bin), by hand."""
    total, n = 0.0, 0
    horizon = cuts[-1]
    for a_row, t_row, d_row in zip(logits.tolist(), time.tolist(), event.tolist()):
        for a, t, d in zip(a_row, t_row, d_row):
            d = d and t <= horizon
            t = min(t, horizon)
            value = 0.0
            for j in range(len(cuts) - 1):
                width = cuts[j + 1] - cuts[j]
                rate = math.log1p(math.exp(a[j])) / width
                value += rate * min(max(t - cuts[j], 0.0), width)
                if d and (cuts[j] < t <= cuts[j + 1] or (j == 0 and t == 0)):
                    value -= math.log(rate)
            total += value
            n += 1
    return total / n


def test_task_likelihood_matches_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    n, k, bins = 7, 5, 4
    cuts = [0.0, 0.5, 1.25, 3.0, 6.0]
    logits = torch.randn(n, k, bins, generator=gen, dtype=torch.float64)
    time = torch.rand(n, k, generator=gen, dtype=torch.float64) * 8.0  # some past the horizon
    time[0, 0] = 0.0
    event = torch.rand(n, k, generator=gen) < 0.5
    out = PretrainingCriterion(cuts)({"tte_logits": logits, "tte_time": time, "tte_event": event}, {})
    assert float(out["tte"]) == pytest.approx(_nll_loop(logits, time, event, cuts), rel=1e-9)
    assert out["loss"] is out["tte"] and out["mlm"] is None
    with pytest.raises(ValueError, match="tte"):
        pretraining_loss({"tte_logits": logits, "tte_time": time, "tte_event": event})


# --------------------------------------------------------------------------- head


def test_low_rank_head_is_the_factorised_form_and_small():
    torch.manual_seed(0)
    d, k, bins, rank = 12, 50, 6, 4
    head = TimeToEventHead(d, k, bins, rank)
    torch.nn.init.normal_(head.bias)
    h = torch.randn(9, d)
    logits = head(h)
    assert logits.shape == (9, k, bins)
    p = (h @ head.project.weight.T + head.project.bias).view(9, bins, rank)
    for b in range(bins):
        expected = p[:, b] @ head.task_embedding.T + head.bias[:, b]
        torch.testing.assert_close(logits[:, :, b], expected)
    weight, bias = head.task_affine(7)
    torch.testing.assert_close(h @ weight.T + bias, logits[:, 7])
    n_params = sum(p.numel() for p in head.parameters())
    assert n_params == d * bins * rank + bins * rank + k * (rank + bins)  # not d * k * bins


# --------------------------------------------------------------------------- rate recovery


def _rates(logits, cuts):
    return torch.nn.functional.softplus(logits) / torch.as_tensor(np.diff(cuts), dtype=logits.dtype)


def test_head_trained_by_the_likelihood_recovers_a_poisson_rate():
    rate = 0.8
    X = _poisson_cohort(250, rate, seed=2)
    tok = EHRTokenizer(max_length=1024).fit(X)
    batch = collate_tokens(tok.transform(X), np.arange(len(X)))
    task_of_code = torch.full((tok.vocab_size_,), -1, dtype=torch.long)
    task_of_code[tok.vocabulary_["A"]] = 0
    task_of_code[tok.vocabulary_["B"]] = 1
    time, event = tte_targets(batch["codes"], batch["visits"], batch["age_bins"], batch["visit_times"],
                              batch["visit_mask"], task_of_code, 2, batch["attention_mask"])
    rows = tte_rows(batch["visit_mask"], batch["visit_complete"])
    time, event = time[rows], event[rows]
    cuts = [0.0, 0.3, 0.8, 1.5, 3.0]
    torch.manual_seed(0)
    head = TimeToEventHead(4, 2, len(cuts) - 1, rank=2)  # starts at bias 0: rate ~ 0.7 / width
    h = torch.ones(len(time), 4)  # one representation: the head can only learn the marginal rate
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = PretrainingCriterion(cuts)({"tte_logits": head(h), "tte_time": time,
                                           "tte_event": event}, {})["loss"]
        loss.backward()
        opt.step()
    fitted = _rates(head(h[:1])[0, 0].detach(), cuts)
    np.testing.assert_allclose(fitted.numpy(), rate, rtol=0.15)


def test_pretrainer_recovers_a_poisson_rate_and_round_trips(tmp_path):
    rate = 0.8
    X = _poisson_cohort(300, rate, seed=3)
    pre = tiny_pretrainer(objective="tte", tte_tasks=5, tte_bins=4, max_epochs=3,
                          validation_fraction=0).fit(X)
    assert sorted(pre.tte_tasks_) == ["A", "B", "C"]  # only three codes exist
    task = pre.tte_tasks_.index("A")
    module = pre.module_.eval()
    batch = collate_tokens(pre.tokenizer_.transform(X.iloc[:100]), np.arange(100))
    with torch.no_grad():
        logits = module(**batch)["tte_logits"][:, task]
    fitted = _rates(logits.double(), pre.tte_cuts_).mean(0)
    # the last bin holds the longest, fewest waits: checked more loosely
    np.testing.assert_allclose(fitted[:-1].numpy(), rate, rtol=0.15)
    np.testing.assert_allclose(fitted[-1].item(), rate, rtol=0.3)
    assert "train_tte" in pre.history_[-1]
    # saved and loaded: same tasks, grid and predictions
    pre.save(tmp_path / "p.pt")
    loaded = type(pre).load(tmp_path / "p.pt")
    with torch.no_grad():
        again = loaded.module_.eval()(**batch)["tte_logits"][:, task]
    torch.testing.assert_close(again, logits)
    assert loaded.module_.tte_cuts == tuple(pre.tte_cuts_)


# --------------------------------------------------------------------------- pretrainer


def test_combined_objectives_share_the_causal_pass_and_log_each_part():
    X = _cohort(40, seed=4)
    pre = tiny_pretrainer(objective="mlm+next_visit+tte", tte_tasks=3, tte_bins=3,
                          validation_fraction=0.2).fit(X)
    last = pre.history_[-1]
    for part in ("mlm", "next_visit", "tte"):
        assert np.isfinite(last[f"train_{part}"]) and np.isfinite(last[f"valid_{part}"])
    assert last["train_loss"] == pytest.approx(
        last["train_mlm"] + last["train_next_visit"] + last["train_tte"], rel=1e-5)
    assert pre.module_.tte_head.num_tasks == 3 and len(pre.tte_cuts_) <= 4
    assert clone(pre).get_params()["objective"] == "mlm+next_visit+tte"


def test_tasks_are_the_most_frequent_codes_or_prefix_groups():
    X = pd.DataFrame({
        "codes": [[["I21.0", "E11"], ["I21.4"], ["I22", "E11"], ["Z99"]],
                  [["E11"], ["I21.9"], ["E11", "Z99", "I25"]]],
        "ages": [[50.0, 51.0, 52.5, 53.0], [40.0, 41.0, 43.0]],
    })
    # visits holding each code: E11 4, Z99 2, then the I2x codes once each (ties by name)
    pre = tiny_pretrainer(objective="tte", tte_tasks=2, tte_bins=2, validation_fraction=0).fit(X)
    assert pre.tte_tasks_ == ["E11", "Z99"]
    # grouped by 2 characters: I2 (5 visits) > E1 (4) > Z9 (2)
    pre = tiny_pretrainer(objective="tte", tte_tasks=2, tte_prefix=2, tte_bins=2,
                          validation_fraction=0).fit(X)
    assert pre.tte_tasks_ == ["I2", "E1"]
    voc, task_of_code = pre.vocabulary_, pre.module_.task_of_code
    assert {int(task_of_code[voc[c]]) for c in ("I21.0", "I21.4", "I21.9", "I22")} == {0}
    assert int(task_of_code[voc["Z99"]]) == -1


def test_module_refuses_tte_without_tasks():
    with pytest.raises(ValueError, match="task_of_code"):
        BEHRTPretrainingModule(tiny_config(), "tte")


# --------------------------------------------------------------------------- sampled terms


def test_sampled_visits_and_tasks_are_subsets_with_the_same_targets():
    from survbehrt.model.tte import sample_rows, sample_tasks

    torch.manual_seed(0)
    rows = torch.rand(50, 12) < 0.7
    kept = sample_rows(rows, 3)
    assert not (kept & ~rows).any()
    assert torch.equal(kept.sum(1), rows.sum(1).clamp(max=3))
    assert sample_rows(rows, None) is rows
    # every row is drawn sometimes: the draw is not the first visits
    hits = sum(sample_rows(rows, 3).long() for _ in range(200))
    assert bool((hits[rows] > 0).all())

    X = _cohort(20, seed=5, n_codes=9)
    tok = EHRTokenizer(max_length=512).fit(X)
    batch = collate_tokens(tok.transform(X), np.arange(len(X)))
    task_of_code = torch.full((tok.vocab_size_,), -1, dtype=torch.long)
    for k in range(9):
        task_of_code[tok.vocabulary_[f"C{k}"]] = k
    args = (batch["codes"], batch["visits"], batch["age_bins"], batch["visit_times"], batch["visit_mask"])
    time, event = tte_targets(*args, task_of_code, 9)
    tasks, sub_map = sample_tasks(task_of_code, 9, 4)
    assert len(set(tasks.tolist())) == 4
    sub_time, sub_event = tte_targets(*args, sub_map, 4)
    torch.testing.assert_close(sub_time, time[..., tasks])
    assert torch.equal(sub_event, event[..., tasks])
    head = TimeToEventHead(6, 9, 3, rank=2)
    h = torch.randn(5, 6)
    torch.testing.assert_close(head(h, tasks), head(h)[:, tasks])


# --------------------------------------------------------------------------- zero-shot start


def test_survival_head_started_from_a_task_reproduces_its_logits():
    from sksurv.util import Surv

    from helpers import tiny_estimator

    X = _poisson_cohort(120, 0.8, seed=6)
    pre = tiny_pretrainer(objective="tte", tte_tasks=3, tte_bins=3, max_epochs=1,
                          validation_fraction=0).fit(X)
    rng = np.random.default_rng(0)
    y = Surv.from_arrays(rng.random(len(X)) < 0.6, rng.uniform(0.05, 3.0, len(X)))
    task = pre.tte_tasks_.index("A")
    # on the task's own grid (explicit edges), the start is exact: no shift between grids
    est = tiny_estimator(pretrained=pre, init_head_from_task="A", max_epochs=0, wide=None,
                         time_bins=list(pre.tte_cuts_[1:])).fit(X, y)
    batch = collate_tokens(pre.tokenizer_.transform(X.iloc[:30]), np.arange(30))
    last = batch["visit_mask"].sum(1) - 1
    with torch.no_grad():
        reps, _ = pre.module_.encoder.eval().visit_representations(**batch, causal=True)
        expected = pre.module_.tte_head(reps[torch.arange(30), last])[:, task]
        got = est.net_.module_.eval()(**batch)[torch.arange(30), last]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="not one of"):
        tiny_estimator(pretrained=pre, init_head_from_task="ZZZ", max_epochs=0).fit(X, y)
    with pytest.raises(ValueError, match="needs `pretrained`"):
        tiny_estimator(init_head_from_task="A", max_epochs=0).fit(X, y)


# --------------------------------------------------------------------------- checkpoints


def test_an_interrupted_fit_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from skorch.callbacks import Callback

    import survbehrt.estimators._nets as nets_module

    class Interrupt(Callback):  # as a user's Ctrl-C after the first epoch (skorch stops cleanly)
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 1:
                raise KeyboardInterrupt

    X = _cohort(60, seed=7)
    params = dict(objective="tte", tte_tasks=3, tte_bins=3, max_epochs=3, batch_size=16,
                  validation_fraction=0, dropout=0.0)
    full = tiny_pretrainer(**params).fit(X)
    with monkeypatch.context() as patch:
        patch.setattr(nets_module, "progress_callbacks", lambda verbose: [("stop", Interrupt())])
        cut = tiny_pretrainer(**params, checkpoint_dir=tmp_path / "cp").fit(X)
    assert len(cut.history_) == 1
    assert cut.history_[0, "train_loss"] == full.history_[0, "train_loss"]
    resumed = tiny_pretrainer(**params, checkpoint_dir=tmp_path / "cp").fit(X)
    assert len(resumed.history_) == 3  # the two epochs left, after the checkpointed one
    assert resumed.history_[0, "train_loss"] == cut.history_[0, "train_loss"]

    def lrs(history):
        return [batch["event_lr"] for epoch in history for batch in epoch["batches"]]

    # the schedule goes on where it stopped: every batch's rate is the uninterrupted fit's
    np.testing.assert_allclose(lrs(resumed.history_), lrs(full.history_), rtol=1e-6)
    # nothing left to run: the next fit is the checkpoint's weights
    again = tiny_pretrainer(**params, checkpoint_dir=tmp_path / "cp").fit(X)
    assert len(again.history_) == 3
    for name, value in resumed.module_.state_dict().items():
        torch.testing.assert_close(again.module_.state_dict()[name], value)
    with pytest.raises(ValueError, match="random_state"):
        tiny_pretrainer(**params, random_state=None, checkpoint_dir=tmp_path / "x").fit(X)


def test_tte_pretraining_on_a_token_store_equals_the_frame(tmp_path):
    from survbehrt.data import write_tokens

    X = _cohort(50, seed=8)
    params = dict(objective="mlm+tte", tte_tasks=4, tte_bins=3, max_epochs=1, validation_fraction=0)
    frame = tiny_pretrainer(**params).fit(X)
    store = write_tokens(frame.tokenizer_, X, tmp_path / "s")  # memory-mapped, read by batch
    on_store = tiny_pretrainer(**params).fit(store)
    assert on_store.tte_tasks_ == frame.tte_tasks_
    np.testing.assert_array_equal(on_store.tte_cuts_, frame.tte_cuts_)
    np.testing.assert_array_equal(on_store.transform(store[[3, 1]]), frame.transform(X.iloc[[3, 1]]))
