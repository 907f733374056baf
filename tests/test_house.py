"""House rules checked on the source tree: no import cycles, no oversized library modules."""

import ast
import subprocess
import sys
from pathlib import Path

import scorekit

PKG = Path(scorekit.__file__).parent
SRC = PKG.parent
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """scorekit modules imported at module level (not inside functions) by `name`."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:  # top-level statements only
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from . import x` may name a submodule
                if f"{mod}.{a.name}" in known:
                    found.add(f"{mod}.{a.name}")
            if mod in known:
                found.add(mod)
    found.discard(name)
    return found


def test_module_level_imports_have_no_cycle():
    mods = _modules()
    graph = {m: _module_level_imports(m, p, set(mods)) for m, p in mods.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            # a submodule importing its own package's __init__ is how Python resolves `from . import x`; skip it
            if m.startswith(n + "."):
                continue
            if state.get(n) == "open":
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


_IMPORT_EACH = """
import os, sys, traceback
import numpy, torch  # third-party imports once; each module is then imported into a fresh scorekit state
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED:" + ",".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first_in_a_fresh_interpreter():
    names = [m for m in _modules() if m != "scorekit.__main__"]
    p = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names], capture_output=True, text=True, timeout=600, cwd=SRC
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]


def test_no_library_module_exceeds_600_lines():
    too_long = {}
    for path in _modules().values():
        rel = path.relative_to(PKG).as_posix()
        if rel == "cli.py" or rel.startswith("commands/"):
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            too_long[rel] = n
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else module


# (importer, imported) pairs of top-level scorekit modules that must never appear, at module level or inside
# functions: the core knows no sampler; samplers know no training or DMCMC; metrics make no samples; data knows no
# models; nothing in the library knows the command line.
NEVER = [
    *[(core, s) for core in ("processes", "analytic", "models") for s in ("samplers", "sampling", "dmcmc")],
    *[("samplers", t) for t in ("training", "dmcmc", "sampling", "losses")],
    *[("metrics", s) for s in ("samplers", "sampling", "dmcmc")],
    ("data", "models"),
    *[(lib, "commands") for lib in ("processes", "analytic", "models", "samplers", "sampling", "dmcmc", "training")],
    *[(lib, "cli") for lib in ("processes", "analytic", "models", "samplers", "sampling", "dmcmc", "training")],
]


def _all_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """scorekit modules imported anywhere in `name` (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("scorekit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known}
    return {m for m in found if m.startswith("scorekit")}


def test_never_arrows():
    mods = _modules()
    bad = []
    for name, path in mods.items():
        for dep in _all_imports(name, path, set(mods)):
            if (_top(name), _top(dep)) in NEVER:
                bad.append(f"{name} imports {dep}")
    assert not bad, "forbidden imports: " + "; ".join(sorted(bad))
