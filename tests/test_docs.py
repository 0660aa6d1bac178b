"""The documentation is tested like code.

1. **Every code block runs.** Each ```` ```python ```` fenced block of every page under
   ``docs/`` is executed; the blocks of one page run in order in one namespace (a page
   is one script), in a temporary working directory, with matplotlib's ``Agg`` backend.
   Other fences (```` ```text ````, ```` ```bash ````, ...) are not run: use
   ```` ```text ```` for printed output and ```` ```bash ```` for shell commands.

   Two HTML comments, placed on the line(s) just before a block's opening fence
   (blank lines in between are fine), change that:

   - ``<!-- skip: <reason> -->`` never runs the block. Use it only for what cannot run
     in a test: a GPU, several worker processes or machines, a long benchmark. The
     reason is required.
   - ``<!-- requires: <module> -->`` runs the block only when ``<module>`` imports
     (e.g. a part of the package another change is adding); otherwise the block is
     skipped with a warning. Later blocks of the page must not depend on it.

   - ``<!-- output: unchecked, <reason> -->`` just before a ```` ```text ```` block
     that follows a python block: its content is not compared (timings, memory).

   **Printed output is compared** (unless ``SURVBEHRT_DOCS_OUTPUT=unchecked``, which CI
   sets for its run at the declared minimum versions). A ```` ```text ```` block that directly follows a
   python block (only blank lines or an ``output`` marker between) is that block's
   printed output: what the block prints must match it, text exactly (whitespace
   collapsed) and numbers to 1 % (relative or absolute), so a page cannot go stale.
   ``python tests/test_docs.py --update [pages...]`` runs the pages and rewrites those
   blocks with what they print now; read the diff before committing it.

   Keep the blocks tiny (``n_patients <= 300``, small models, ``max_epochs <= 2``). The
   exceptions are the first results a newcomer reads (``index.md``, ``tuning.md``), which
   must show a model that learned something (a C-index above chance): there, up to 1,000
   patients and 10 epochs of a 32-wide one-layer model. The whole module takes about a
   minute of CPU time.

2. **Every public name is in the API reference.** Each name in ``__all__`` of
   ``survbehrt``, ``survbehrt.data``, ``survbehrt.metrics``, ``survbehrt.losses``,
   ``survbehrt.survival`` and ``survbehrt.datasets`` must be rendered by a
   ``::: <target>`` directive of a page under ``docs/api/``: either ``::: module.name``,
   or ``::: module`` whose ``members:`` option lists the name (no ``members:`` option
   renders the whole ``__all__``).

3. **Docstrings have the numpydoc sections mkdocstrings renders**: ``Parameters`` for a
   callable that takes arguments (``Attributes`` also counts for a dataclass or
   ``NamedTuple``, whose fields are its arguments) and ``Returns`` (or ``Yields``) for a
   function or method that returns a value. Classes are checked through their own
   public methods as well.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import re
import textwrap
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
API = DOCS / "api"

CHECKED_MODULES = (
    "survbehrt",
    "survbehrt.data",
    "survbehrt.metrics",
    "survbehrt.losses",
    "survbehrt.survival",
    "survbehrt.cox_start",
    "survbehrt.recalibration",
    "survbehrt.datasets",
    "survbehrt.intervals",
    "survbehrt.explain",
)

# Names whose docstrings lack a section this module requires. The package is edited by
# others; the documentation work reports these instead of editing the docstrings (see
# the docs report). Remove a name once its docstring is fixed: the test is not strict,
# so a fixed name passes silently, and a new defect fails.

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
MARKER = re.compile(
    r"^\s*<!--\s*(?P<kind>skip|requires|output)\s*:\s*(?P<arg>.*?)\s*-->\s*$"
)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


# --------------------------------------------------------------------- code blocks


def extract_blocks(text: str):
    """The fenced code blocks of a Markdown page.

    Returns a list of dicts: ``lang``, ``code`` (dedented), ``line`` (1-based line of
    the opening fence) and ``markers`` (``(kind, argument)`` pairs of the HTML comments
    just above the fence).
    """
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        lang = info.split()[0].lstrip(".").lower() if info else ""
        markers = []
        j = i - 1
        while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j])):
            mm = MARKER.match(lines[j])
            if mm:
                markers.append((mm["kind"], mm["arg"]))
            j -= 1
        body = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        blocks.append(
            {"lang": lang, "code": textwrap.dedent("\n".join(body)), "line": i - len(body),
             "markers": markers, "start": i - len(body) - 1, "end": i, "indent": indent}
        )
        i += 1
    return blocks


def output_block(lines, blocks, k):
    """The ``text`` block printed by python block ``k``, or None.

    It must follow the python block with only blank lines or an ``output`` marker
    between them.
    """
    if k + 1 >= len(blocks) or blocks[k + 1]["lang"] != "text":
        return None
    between = lines[blocks[k]["end"] + 1: blocks[k + 1]["start"]]
    ok = all(not line.strip() or (MARKER.match(line) and MARKER.match(line)["kind"] == "output")
             for line in between)
    return blocks[k + 1] if ok else None


def outputs_match(expected: str, actual: str, rel: float = 0.01) -> bool:
    """Whether printed output matches the page: text exactly (whitespace collapsed),
    numbers to ``rel`` (relative, or absolute below 1)."""
    def split(text):
        text = " ".join(text.split())
        return NUMBER.split(text), [float(x) for x in NUMBER.findall(text)]

    words_e, nums_e = split(expected)
    words_a, nums_a = split(actual)
    if words_e != words_a or len(nums_e) != len(nums_a):
        return False
    return all(abs(a - e) <= rel * max(1.0, abs(e)) for e, a in zip(nums_e, nums_a))


def run_page(page, check=True):
    """Run a page's python blocks in order in one namespace; return their printed outputs.

    Returns a list of ``(output_block or None, printed)`` per python block run. With
    ``check``, a mismatch between a block's printed output and the page raises.
    """
    import contextlib
    import io

    text = page.read_text()
    lines = text.splitlines()
    blocks = extract_blocks(text)
    namespace = {"__name__": f"docs_{page.stem}"}
    results = []
    for k, block in enumerate(blocks):
        if block["lang"] not in ("python", "py"):
            continue
        where = f"{page.relative_to(DOCS)}:{block['line']}"
        markers = dict(block["markers"])
        if "skip" in markers:
            assert markers["skip"], f"{where}: <!-- skip: --> needs a reason"
            continue
        if "requires" in markers and not _importable(markers["requires"]):
            warnings.warn(f"{where}: skipped, {markers['requires']} is not importable",
                          stacklevel=1)
            continue
        code = compile(block["code"], where, "exec")
        printed = io.StringIO()
        try:
            # The pages show behaviour, warnings included (a merged time-grid edge,
            # Optuna's ExperimentalWarning); they must not fail a run that turns
            # warnings into errors.
            with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
                warnings.simplefilter("ignore")
                exec(code, namespace)
        except Exception as exc:
            raise AssertionError(f"code block at {where} failed: {exc!r}") from exc
        out = output_block(lines, blocks, k)
        results.append((out, printed.getvalue()))
        if not check or out is None:
            continue
        unchecked = any(kind == "output" for kind, _ in blocks[k + 1]["markers"])
        # The pages record what the current releases print; CI's run at the declared
        # minimum versions (other RNG streams, other fold assignments) runs every block
        # but compares no output.
        unchecked = unchecked or os.environ.get("SURVBEHRT_DOCS_OUTPUT") == "unchecked"
        if not unchecked and not outputs_match(out["code"], printed.getvalue()):
            raise AssertionError(
                f"{where}: printed output differs from the page's text block at line "
                f"{out['line']} (python tests/test_docs.py --update refreshes it):\n"
                f"--- page\n{out['code']}\n--- printed\n{printed.getvalue()}"
            )
    return results


def update_page(page):
    """Rewrite the output blocks of ``page`` with what its python blocks print now."""
    lines = page.read_text().splitlines()
    for out, printed in sorted(run_page(page, check=False), reverse=True,
                               key=lambda r: -1 if r[0] is None else r[0]["start"]):
        if out is None:
            continue
        body = [out["indent"] + line if line else "" for line in printed.rstrip("\n").splitlines()]
        lines[out["start"] + 1: out["end"]] = body
    page.write_text("\n".join(lines) + "\n")


def _pages_with_code():
    pages = []
    for page in sorted(DOCS.rglob("*.md")):
        if any(b["lang"] in ("python", "py") for b in extract_blocks(page.read_text())):
            pages.append(page)
    return pages


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def test_extract_blocks_reads_markers():
    text = (
        "x\n\n<!-- skip: needs a GPU -->\n```python\nimport torch\n```\n\n"
        "```text\nout\n```\n\n- item\n\n    ```python\n    a = 1\n    ```\n"
    )
    blocks = extract_blocks(text)
    assert [b["lang"] for b in blocks] == ["python", "text", "python"]
    assert blocks[0]["markers"] == [("skip", "needs a GPU")]
    assert blocks[0]["code"] == "import torch"
    assert blocks[2]["code"] == "a = 1" and blocks[2]["markers"] == []


def test_every_page_with_code_is_found():
    # guards against a parser change that silently finds nothing to run
    names = {p.relative_to(DOCS).as_posix() for p in _pages_with_code()}
    assert {"index.md", "data.md", "model.md", "pretraining.md", "evaluation.md",
            "tuning.md", "troubleshooting.md"} <= names


@pytest.mark.parametrize(
    "page", _pages_with_code(), ids=lambda p: p.relative_to(DOCS).as_posix()
)
def test_page_code_runs(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:
        run_page(page)
    finally:
        plt.close("all")


def test_outputs_match_compares_text_and_numbers():
    assert outputs_match("C = 0.751 (n=40)\n", "C =  0.7512 (n=40)")
    assert not outputs_match("C = 0.751", "C = 0.791")
    assert not outputs_match("Harrell C = 0.75", "Uno C = 0.75")
    assert not outputs_match("[1 2 3]", "[1 2]")


# --------------------------------------------------------------------- API reference


def _directives():
    """``(target, members or None)`` of every ``::: target`` in the API pages."""
    found = []
    for page in sorted(API.glob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^:::\s+(\S+)\s*$", line)
            if not m:
                continue
            members = None
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                if not lines[j].strip():
                    # a blank line ends the options block unless more indented lines follow
                    if j + 1 < len(lines) and lines[j + 1].startswith((" ", "\t")):
                        j += 1
                        continue
                    break
                mm = re.match(r"^\s+members:\s*(.*)$", lines[j])
                if mm:
                    inline = mm[1].strip()
                    if inline.startswith("["):
                        members = [s.strip(" '\"") for s in inline.strip("[]").split(",") if s.strip()]
                    elif inline in ("false", "False", "[]"):
                        members = []
                    else:
                        members = []
                        k = j + 1
                        while k < len(lines) and re.match(r"^\s+-\s+\S", lines[k]):
                            members.append(lines[k].split("-", 1)[1].strip().strip("'\""))
                            k += 1
                j += 1
            found.append((m[1], members))
    return found


def _public_names():
    for module_name in CHECKED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):  # __version__
                continue
            yield module_name, name


def _rendered(module_name, name, obj, directives):
    owner = getattr(obj, "__module__", None)
    for target, members in directives:
        if target in (f"{module_name}.{name}", f"{owner}.{name}"):
            return True
        if target in (module_name, owner) and (members is None or name in members):
            return True
    return False


def test_every_public_name_is_in_the_api_reference():
    directives = _directives()
    assert directives, "no ::: directive found under docs/api"
    missing = []
    for module_name, name in _public_names():
        obj = getattr(importlib.import_module(module_name), name)
        if not _rendered(module_name, name, obj, directives):
            missing.append(f"{module_name}.{name}")
    assert not missing, f"not in docs/api/*.md: {missing}"


# --------------------------------------------------------------------- docstrings


def _sections(doc: str) -> set[str]:
    lines = inspect.cleandoc(doc or "").splitlines()
    return {
        lines[i].strip()
        for i in range(len(lines) - 1)
        if lines[i].strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip())
    }


def _takes_arguments(func) -> bool:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return bool(params)


def _returns_value(func) -> tuple[bool, bool]:
    """Whether ``func``'s own body returns a value / yields (nested functions ignored)."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return False, False
    tree = ast.parse(source)
    fn = tree.body[0]
    returns = yields = False
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                returns = True
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            yields = True
        stack.extend(ast.iter_child_nodes(node))
    return returns, yields


def _check_function(qualname, func, problems, field_class=False):
    sections = _sections(inspect.getdoc(func))
    if not inspect.getdoc(func):
        problems.append(f"{qualname}: no docstring")
        return
    if _takes_arguments(func) and "Parameters" not in sections:
        if not (field_class and "Attributes" in sections):
            problems.append(f"{qualname}: no Parameters section")
    if inspect.isclass(func):
        return
    returns, yields = _returns_value(func)
    if returns and "Returns" not in sections:
        problems.append(f"{qualname}: no Returns section")
    if yields and not sections & {"Yields", "Returns"}:
        problems.append(f"{qualname}: no Yields section")


def _is_field_class(cls) -> bool:
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


def docstring_problems():
    problems = []
    for module_name, name in _public_names():
        obj = getattr(importlib.import_module(module_name), name)
        qualname = f"{module_name}.{name}"
        if inspect.isclass(obj):
            _check_function(qualname, obj, problems, field_class=_is_field_class(obj))
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    _check_function(f"{qualname}.{attr}", member, problems)
        elif callable(obj):
            _check_function(qualname, obj, problems)
    return problems


def test_docstrings_have_parameters_and_returns():
    problems = docstring_problems()
    assert not problems, "docstring sections missing:\n" + "\n".join(problems)


# --------------------------------------------------------------------- one --quick claim

DURATION = re.compile(
    r"\b\d+(?:\.\d+)?[ -]?(?:s|secs?|seconds?|min|mins|minutes?|h|hours?)\b"
    r"|\b(?:a|one|two|three|few|several)(?: few)? (?:seconds|minutes?)\b",
    re.IGNORECASE,
)


def _quick_duration_claims(text: str, name: str = "") -> list[str]:
    """Lines of ``text`` that state how long ``--quick`` (or a ``quick`` run) takes."""
    lines = text.splitlines()
    claims = []
    for i, line in enumerate(lines):
        if "--quick" not in line and "quick=" not in line:
            continue
        # the claim may wrap onto the next line; stop the window at the end of the sentence
        window = line + " " + (lines[i + 1] if i + 1 < len(lines) else "")
        after = window[window.find("quick"):]
        sentence = re.split(r"(?<=[.;)])\s", after, maxsplit=1)[0]
        if DURATION.search(sentence):
            claims.append(f"{name}:{i + 1}: {line.strip()}")
    return claims


def test_the_quick_duration_is_claimed_in_one_place():
    # How long `survbehrt benchmark --quick` takes is said once, in the README; the docs,
    # the CLI help and the docstrings describe the smoke run without a duration, so the
    # claim cannot drift apart in four places again.
    root = DOCS.parent
    readme = _quick_duration_claims((root / "README.md").read_text(), "README.md")
    assert len(readme) == 1, readme
    elsewhere = [claim for path in [*DOCS.rglob("*.md"), *(root / "survbehrt").rglob("*.py")]
                 for claim in _quick_duration_claims(path.read_text(), str(path))]
    assert not elsewhere, f"--quick durations outside the README: {elsewhere}"
    # the detector finds the claims in the shapes they took before, and not the others
    for text in ("`survbehrt benchmark --quick` is a 1-minute smoke run",
                 "survbehrt benchmark --quick   # smoke run (< 1 min): 1500 patients",
                 "cross-validated; `survbehrt benchmark --quick` is a smoke run of a few minutes",
                 'bench.add_argument("--quick", action="store_true", help="a smoke run (< 3 minutes)")'):
        assert _quick_duration_claims(text), text
    assert not _quick_duration_claims("about 18 minutes; `--quick` is a smoke run.\nIt takes 5 s.")


if __name__ == "__main__":
    import os
    import sys
    import tempfile

    import matplotlib

    matplotlib.use("Agg", force=True)
    targets = [Path(p).resolve() for p in sys.argv[2:]] if sys.argv[1:2] == ["--update"] else []
    if sys.argv[1:2] != ["--update"]:
        sys.exit("usage: python tests/test_docs.py --update [pages...]")
    for page in targets or _pages_with_code():
        with tempfile.TemporaryDirectory() as tmp:
            here = os.getcwd()
            os.chdir(tmp)
            try:
                update_page(page)
            finally:
                os.chdir(here)
        print("updated", page.relative_to(DOCS))
