"""What every benchmark run shares around its folds: the output folder, the machine record, Ctrl-C."""

from __future__ import annotations

import os
import platform
import signal
import threading
import warnings
from datetime import UTC, datetime
from pathlib import Path

from .settings import OUTPUT_FILES


def write_csv(frame, path, **kwargs) -> None:
    """``frame.to_csv(path)`` without pandas 2.0's cast warning.

    pandas < 2.1 on numpy < 2 warns "invalid value encountered in cast" when it formats
    a float column holding NaN (the oracle's missing IBS, say); the file is right, and
    the warning would reach the run's log, which holds no warnings.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning)
        frame.to_csv(path, **kwargs)


class _InterruptFlag:
    """Remember a Ctrl-C even when a library swallows it.

    skorch catches ``KeyboardInterrupt`` in ``fit`` to end training early, so the
    benchmark would carry on with a half-trained model. The handler records the
    interrupt (and still raises, so skorch stops the fit); :meth:`check` re-raises
    after the fit returns.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        self.raised = True
        raise KeyboardInterrupt

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self):
        if self.raised:
            raise KeyboardInterrupt


def _machine() -> dict:
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite``; then clear our own old files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} exists and is not empty; choose another output folder, or overwrite "
                f"it (--overwrite; overwrite=True)."
            )
        # only the files a run writes: an old plot must not pass for this run's
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
