"""Which modules ``BEHRTSurvivalEstimator.fit`` passes through, and how often.

Run: ``python benchmarks/fit_path.py [--pretrainer]``.

The calls of ``fit`` are traced (``sys.setprofile``) on a small synthetic cohort, keeping
the calls from a survbehrt function to a survbehrt function (what third-party code calls
back, e.g. skorch calling the net's ``get_loss`` or the module's ``forward`` during
training, is not followed). A *stop* is a call into another module than the caller's;
it goes *back up* when the module it enters is already on the call stack (a module that
called down is called again from below). A call site is counted once, however often it
runs (a loop over the cross-validation folds, an optimiser's closure): the path is
what a reader follows, not how often the machine goes round. Printed: the stops in
call order with their depth below ``fit`` (``module.function``), the number of stops
per module, and the totals, for the whole path and for the calls ``fit`` makes itself
(its steps).
"""

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import survbehrt
from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr

ROOT = str(Path(survbehrt.__file__).parent)


def _module(frame):
    filename = frame.f_code.co_filename
    if not filename.startswith(ROOT):
        return None
    name = filename[len(ROOT) + 1:].removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def trace(fn):
    stops, back_up, stack, seen = [], [], [], set()

    def profile(frame, event, arg):
        if event not in ("call", "return"):
            return
        callee = _module(frame)
        if event == "return":
            if stack and stack[-1][0] is frame:
                stack.pop()
            return
        caller = _module(frame.f_back) if frame.f_back is not None else None
        if callee is None or caller is None or not stack or frame.f_back is not stack[-1][0]:
            if callee is not None and not stack and frame.f_code.co_name == "fit":
                stack.append((frame, callee))
            return
        site = (frame.f_back.f_code, frame.f_back.f_lineno, frame.f_code)
        if callee != caller and site not in seen:
            seen.add(site)
            stops.append((len(stack), callee, frame.f_code.co_name))
            if callee in {m for _, m in stack}:
                back_up.append(f"{caller} -> {callee}.{frame.f_code.co_name}")
        stack.append((frame, callee))

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return stops, back_up


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pretrainer", action="store_true", help="trace BEHRTPretrainer.fit")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    X, y, _ = make_synthetic_ehr(n_patients=120, random_state=0)
    small = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=1,
                 random_state=0)
    est = BEHRTPretrainer(**small) if args.pretrainer else BEHRTSurvivalEstimator(**small)
    stops, back_up = trace(lambda: est.fit(X) if args.pretrainer else est.fit(X, y))
    for depth, module, function in stops:
        print(f"{'  ' * depth}{module}.{function}")
    counts = Counter(module for _, module, _ in stops)
    print("stops per module:", ", ".join(f"{m} {n}" for m, n in counts.most_common()))
    print(f"{len(stops)} stops in {len(counts)} modules; most in one module: "
          f"{max(counts.values())}; {len(back_up)} back up: {back_up}")
    spine = Counter(module for depth, module, _ in stops if depth == 1)
    print(f"fit's own calls (depth 1): {sum(spine.values())} stops in {len(spine)} modules; "
          f"per module: " + ", ".join(f"{m} {n}" for m, n in spine.most_common()))


if __name__ == "__main__":
    main()
