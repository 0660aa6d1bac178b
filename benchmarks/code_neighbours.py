"""Does the pre-trained encoder know which codes are synonyms? Nearest code embeddings.

Run: ``OMP_NUM_THREADS=1 python benchmarks/code_neighbours.py [--seed 0] [--pool 40000]
[--code-init random cooccurrence]`` (about 3 minutes per pretrainer on one core).

On the ``"synonyms"`` cohort (each risk concept ``P``, ``Q``, ``R`` spread over 20
synonym codes sharing a prefix; the background concepts' synonyms are drawn apart from
each other, so only their prefix tells them), the label-efficiency benchmark's default
pretrainer (``objective="mlm+next_visit+tte"``, its model and its 2 epochs) is fitted on its histories
(the pool and 4,000 labelled patients' histories) with each ``code_init``. For each
code, its nearest other code by the cosine of their embeddings: the share whose
nearest code is a synonym of its own concept, for the risk concepts' codes and for all
codes, at the start (before any epoch) and after pre-training. For reference, the same
share from the codes' within-visit co-occurrence alone (the cosine of their rows of
positive pointwise mutual information), and what chance gives (the mean share of the
other codes that are synonyms).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from survbehrt.data.cooccurrence import visit_cooccurrence
from survbehrt.data.tokenizer import N_SPECIAL
from survbehrt.datasets import make_synthetic_ehr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le  # noqa: E402  (the benchmark's histories and pretrainer)


def neighbour_shares(vectors, concept, risk):
    """Shares of codes (all; the risk concepts') whose nearest other vector is of their concept."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    same = concept[cos.argmax(axis=1)] == concept
    return float(same.mean()), float(same[risk].mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=40000)
    parser.add_argument("--code-init", nargs="+", default=["random", "cooccurrence"])
    args = parser.parse_args(argv)
    run = le.Run(le.parse_args(["--datasets", "synthetic-synonyms", "--pool", str(args.pool),
                                "--seeds", str(args.seed)]))
    _, histories, *_ = next(le.synthetic_runs(run, "synthetic-synonyms", args.seed))
    concepts = make_synthetic_ehr(10, "synonyms", random_state=args.seed,
                                  return_info=True)[3]["concepts"]
    rows = []
    for init in args.code_init:
        pre = {}
        for epochs in (0, run.args.pretrain_epochs):
            pre[epochs] = run.pretrainer("mlm+next_visit+tte", args.seed).set_params(
                code_init=init, max_epochs=epochs).fit(histories)
        tok = pre[0].tokenizer_
        names = np.array(tok.codes_[N_SPECIAL:]).astype(str)
        concept = np.array([c[:3] for c in names])
        risk = np.isin(concept, list(concepts.values()))
        for epochs, model in pre.items():
            weight = model.module_.encoder.embeddings.code.weight.detach().numpy()[N_SPECIAL:]
            rows.append((init, epochs, *neighbour_shares(weight, concept, risk)))
    counts = visit_cooccurrence(tok.transform(histories), tok.vocab_size_, N_SPECIAL)
    counts = counts.toarray()[N_SPECIAL:, N_SPECIAL:]
    total, rowsum = counts.sum(), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / np.outer(rowsum, rowsum))
    ppmi = np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)
    same = concept[:, None] == concept[None, :]
    chance = (same.sum(axis=1) - 1) / (len(concept) - 1)
    print(f"synonyms seed {args.seed}: {len(names)} codes, {risk.sum()} of the risk concepts "
          f"{sorted(concepts.values())}, {len(histories)} histories")
    print(f"{'code_init':<13} {'epochs':>6}  nearest code a synonym: all codes, risk codes")
    for init, epochs, share_all, share_risk in rows:
        print(f"{init:<13} {epochs:>6}  {share_all:9.3f}  {share_risk:10.3f}")
    share_all, share_risk = neighbour_shares(ppmi, concept, risk)
    print(f"{'PPMI rows':<13} {'':>6}  {share_all:9.3f}  {share_risk:10.3f}")
    print(f"{'chance':<13} {'':>6}  {chance.mean():9.3f}  {chance[risk].mean():10.3f}")


if __name__ == "__main__":
    main()
