"""Every example runs end to end (as a user would start it), on a reduced scale."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
# The searches repeat many fits; their mechanics are covered by test_ecosystem / test_optuna.
SLOW = {"grid_search.py", "optuna_search.py"}


@pytest.mark.parametrize(
    "script",
    [pytest.param(p.name, marks=[pytest.mark.slow] if p.name in SLOW else [])
     for p in sorted(EXAMPLES.glob("*.py"))],
)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, SURVBEHRT_EXAMPLE_SCALE="0.2", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "an example should print what it shows"
