"""The layout's own rules, checked on the source tree: small modules, no import cycles, one ELF reader.

These keep the code changeable: a module over 600 lines or a cycle between modules is where a
change starts to need reading the whole program.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("potnn", "bench")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python module of the project's packages."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports, at any level (function-level imports count too)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import b" imports the module pkg.b when there is one, else a name of pkg
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for t in targets:
            # the longest known prefix: "bench.run.execute" -> "bench.run"
            parts = t.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in known:
                    if cand != name:
                        out.add(cand)
                    break
    return out


def test_no_module_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle() -> None:
    """A package importing its own submodules (``__init__`` re-exports) is not a cycle; anything else is."""
    mods = _modules()
    known = set(mods)
    graph = {n: {m for m in _imports(n, p, known) if not n.startswith(m + ".") and not m.startswith(n + ".")}
             for n, p in mods.items()}
    # Tarjan's strongly connected components; any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_detector_sees_a_cycle(tmp_path: Path) -> None:
    """The import scan resolves relative and function-level imports (else the test above proves nothing)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from .a import f\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    assert _imports("pkg.a", pkg / "a.py", known) == {"pkg.b"}
    assert _imports("pkg.b", pkg / "b.py", known) == {"pkg.a"}


def test_one_module_reads_elf_files() -> None:
    readers = sorted(str(p.relative_to(ROOT)) for p in _modules().values()
                     if "elftools" in p.read_text())
    assert len(readers) == 1, f"ELF files are read by {readers}; one module should own that"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_grab_bag_modules(pkg: str) -> None:
    bags = [p.name for p in (ROOT / pkg).rglob("*.py") if p.stem in ("utils", "helpers", "misc", "common")]
    assert not bags, f"modules named for no concern in {pkg}/: {bags}"


def test_the_library_does_not_import_the_bench() -> None:
    """potnn is usable without the bench; the bench depends on the library, never the reverse."""
    mods = _modules()
    known = set(mods)
    offenders = {n: sorted(m for m in _imports(n, p, known) if m.split(".")[0] == "bench")
                 for n, p in mods.items() if n.split(".")[0] == "potnn"}
    assert not {n: v for n, v in offenders.items() if v}
