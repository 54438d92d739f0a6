"""The import graph of the package: no cycle, no study importing another study, no shared module importing a study.

The graph is read from the source with `ast`, imports at module level and inside functions alike (an import placed in
a function to dodge a cycle is still a cycle). A `"module:function"` string in a registry (`hhperc.cli.COMMANDS`,
`hhperc.synth.STUDIES`) is not an import: it is resolved only when that command runs. Each rule is also shown to fail
on a small synthetic graph and on a small synthetic package, so a broken checker cannot pass silently."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("hhperc.perception", "hhperc.luab", "hhperc.hhi")
SHARED = ("hhperc.config", "hhperc.models", "hhperc.formats", "hhperc.tables", "hhperc.reproduce", "hhperc.train",
          "hhperc.command", "hhperc.synth", "hhperc.cli")


def module_name(path: Path, pkg_root: Path) -> str:
    "hhperc/luab/train.py -> hhperc.luab.train; hhperc/luab/__init__.py -> hhperc.luab."
    parts = path.relative_to(pkg_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    "Every dotted name an import statement anywhere in `tree` refers to (relative imports made absolute)."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base_parts = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (n.level - 1)]
                base = ".".join(base_parts + ([n.module] if n.module else []))
            else:
                base = n.module or ""
            out.add(base)
            out |= {f"{base}.{a.name}" for a in n.names}
    return out


def import_graph(pkg_root: Path) -> dict[str, set[str]]:
    "module -> the package's modules it imports (a `from pkg import name` counts pkg, and pkg.name when that is a module)."
    files = {module_name(p, pkg_root): p for p in pkg_root.rglob("*.py") if p.name != "_modidx.py"}
    graph = {}
    for m, p in files.items():
        names = imported_names(ast.parse(p.read_text(encoding="utf-8")), m, p.name == "__init__.py")
        graph[m] = {t for t in names if t in files and t != m}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle as [a, b, ..., a], or None. A package importing its own sub-modules from __init__ is skipped."
    WHITE, GREY, BLACK = 0, 1, 2
    colour, stack = {m: WHITE for m in graph}, []

    def visit(m):
        colour[m] = GREY; stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t.startswith(m + "."): continue                    # pkg/__init__ -> pkg.sub is not a cycle worth flagging
            if colour.get(t) == GREY: return stack[stack.index(t):] + [t]
            if colour.get(t) == WHITE:
                c = visit(t)
                if c: return c
        stack.pop(); colour[m] = BLACK
        return None

    for m in sorted(graph):
        if colour[m] == WHITE:
            c = visit(m)
            if c: return c
    return None


def study_of(module: str) -> str | None:
    return next((s for s in STUDIES if module == s or module.startswith(s + ".")), None)


def layering_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    "(importer, imported) pairs where a study imports another study or a shared module imports a study."
    bad = []
    for a, targets in graph.items():
        for b in targets:
            sa, sb = study_of(a), study_of(b)
            if sb and sa and sa != sb: bad.append((a, b))
            if sb and (a in SHARED or a == "hhperc"): bad.append((a, b))
    return sorted(bad)


# ------------------------------------------------------------------------------------------------ the real package
@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT / "hhperc")


def test_graph_sees_the_package(graph):
    assert set(STUDIES) <= set(graph) and "hhperc.cli" in graph
    # known edges, written by hand from the sources: a study's commands import its own steps and the shared framework
    assert {"hhperc.command", "hhperc.config", "hhperc.luab.train"} <= graph["hhperc.luab.commands"]
    assert "hhperc.config" in graph["hhperc.command"]


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_study_imports_another_and_shared_modules_import_no_study(graph):
    assert layering_violations(graph) == []


def test_registry_strings_are_not_imports(graph):
    src = (ROOT / "hhperc" / "cli.py").read_text()
    assert '"hhperc.luab.commands:luab_train"' in src                  # the registry names the study command ...
    assert not any(study_of(t) for t in graph["hhperc.cli"])          # ... without importing the study


# ------------------------------------------------------------------------------------------------ the checks can fail
def test_cycle_found_in_a_synthetic_graph():
    g = {"hhperc.luab.metrics": {"hhperc.luab.train"}, "hhperc.luab.train": {"hhperc.config", "hhperc.luab.metrics"},
         "hhperc.config": set()}
    assert find_cycle(g) == ["hhperc.luab.metrics", "hhperc.luab.train", "hhperc.luab.metrics"]
    g["hhperc.luab.train"].discard("hhperc.luab.metrics")
    assert find_cycle(g) is None
    assert find_cycle({"hhperc.luab": {"hhperc.luab.train"}, "hhperc.luab.train": {"hhperc.config"}, "hhperc.config": set()}) is None


def test_layering_violations_in_a_synthetic_graph():
    g = {"hhperc.hhi.text": {"hhperc.perception.similarity", "hhperc.hhi.formats", "hhperc.config"},
         "hhperc.reproduce": {"hhperc.luab.experiments", "hhperc.config"},
         "hhperc.perception.similarity": {"hhperc.config", "hhperc.models"}}
    assert layering_violations(g) == [("hhperc.hhi.text", "hhperc.perception.similarity"), ("hhperc.reproduce", "hhperc.luab.experiments")]


def test_function_level_and_relative_imports_are_edges(tmp_path):
    pkg = tmp_path / "hhperc"
    for d in ("", "luab", "hhi"):
        (pkg / d).mkdir(parents=True, exist_ok=True); (pkg / d / "__init__.py").write_text("")
    (pkg / "config.py").write_text("import os\n")
    (pkg / "luab" / "train.py").write_text("from ..config import os\n\ndef fit():\n    from .metrics import top1\n    return top1\n")
    (pkg / "luab" / "metrics.py").write_text("def top1():\n    from hhperc.luab import train\n")
    (pkg / "hhi" / "text.py").write_text("def f():\n    import hhperc.luab.metrics as m\n")
    (pkg / "cli.py").write_text('COMMANDS = {"luab": "hhperc.luab.train:fit"}\n')
    g = import_graph(pkg)
    assert g["hhperc.luab.train"] == {"hhperc.config", "hhperc.luab.metrics"}
    assert g["hhperc.luab.metrics"] == {"hhperc.luab", "hhperc.luab.train"}
    assert g["hhperc.cli"] == set()
    assert find_cycle(g) == ["hhperc.luab.metrics", "hhperc.luab.train", "hhperc.luab.metrics"]
    assert layering_violations(g) == [("hhperc.hhi.text", "hhperc.luab.metrics")]


def test_the_command_line_starts_light():
    "`hhperc --help` imports the registry, the command framework and config only: no study, no torch, no pandas."
    import subprocess, sys
    code = ("import sys, contextlib, io\nfrom hhperc.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('hhperc', 'torch', 'pandas', 'numpy'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hhperc", "hhperc.cli", "hhperc.command", "hhperc.config"]
