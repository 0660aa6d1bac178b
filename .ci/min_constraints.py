"""Print pip constraints pinning every declared lower bound (``name>=X`` -> ``name==X``).

Used by ``.ci/run`` to test the oldest versions pyproject.toml claims to support: the
core dependencies and the extras the test suite uses (``dev`` pulls them in). torch is
left out (CI installs the local CPU build first); so is the ``docs`` extra, which the
tests do not import.

    python .ci/min_constraints.py > min-constraints.txt
    pip install -c min-constraints.txt -e ".[dev]"
    python .ci/min_constraints.py --check   # in that environment: the pins are installed
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EXTRAS = ("plot", "polars", "parquet", "tuning", "distributed")
SKIP = {"torch"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*$")


def minimum_pins(pyproject: Path) -> list[str]:
    """``name==lower-bound`` for the core dependencies and the tested extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    pins = {}
    for req in requirements:
        m = REQUIREMENT.match(req)
        if m is None:
            raise SystemExit(f"{pyproject}: {req!r} has no plain '>=' lower bound to pin")
        name = m[1].lower().replace("_", "-")
        if name not in SKIP:
            pins[name] = f"{name}=={m[3]}"
    return sorted(pins.values())


def check_installed(pins: list[str]) -> list[str]:
    """The pins whose installed version differs (or that are missing)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    wrong = []
    for pin in pins:
        name, wanted = pin.split("==")
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        if found == "not installed" or Version(found) != Version(wanted):
            wrong.append(f"{name}: wanted {wanted}, found {found}")
    return wrong


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    pins = minimum_pins(root / "pyproject.toml")
    if sys.argv[1:] == ["--check"]:
        wrong = check_installed(pins)
        if wrong:
            raise SystemExit("minimum versions not installed:\n  " + "\n  ".join(wrong))
        print(f"{len(pins)} minimum versions installed: {' '.join(pins)}")
    else:
        sys.stdout.write("\n".join(pins) + "\n")
