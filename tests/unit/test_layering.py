"""Each rule in one place (issue 21): the kernel (shared/) and the services import neither the
tooling (tooling/: devstack, devkeys, make run's launcher), nor the simulator, the bench or the
tests. The check reads every module's source with `ast`, so an import inside a function (the
launcher's `from simulator.province import ...` was one) counts as much as one at the top, and so
does `importlib.import_module("...")` with a literal name."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARDED = ("shared", "services")
FORBIDDEN = frozenset({"tooling", "simulator", "bench", "tests"})


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every absolute module name the source imports, with its line: `import a.b`, `from a.b import c`
    (relative imports stay inside their own package) and `import_module("a.b")` / `__import__("a.b")`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in {"import_module", "__import__"}:
                found.append((node.lineno, node.args[0].value))
    return found


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    return [(line, name) for line, name in imported_modules(source) if name.split(".")[0] in FORBIDDEN]


def guarded_modules() -> list[Path]:
    return sorted(p for package in GUARDED for p in (ROOT / package).rglob("*.py"))


def test_the_walk_sees_every_kind_of_import_it_guards_against():
    source = ("import tooling.devstack\n"
              "from simulator.province import build_province\n"
              "def later():\n"
              "    from bench import raw\n"
              "    import importlib\n"
              "    importlib.import_module('tests.support')\n"
              "from shared import envelope\n"
              "from . import usecases\n"
              "import toolingx\n")
    assert sorted(forbidden_imports(source)) == [(1, "tooling.devstack"), (2, "simulator.province"), (4, "bench"),
                                                 (6, "tests.support")]


def test_the_walk_covers_the_kernel_and_every_service():
    modules = {p.relative_to(ROOT).as_posix() for p in guarded_modules()}
    assert {"shared/envelope.py", "shared/asyncapi.py", "services/settlement/app.py",
            "services/gateway/app.py", "services/binding/app.py", "services/notify/app.py"} <= modules


def test_the_tooling_left_the_kernel():
    assert not (ROOT / "shared" / "devstack.py").exists()
    assert not (ROOT / "shared" / "devkeys.py").exists()
    assert not (ROOT / "shared" / "launch").exists()
    assert (ROOT / "tooling" / "devstack.py").is_file() and (ROOT / "tooling" / "launch" / "__main__.py").is_file()


def test_the_kernel_and_the_services_import_no_tooling_simulator_bench_or_tests():
    offenders = {f"{p.relative_to(ROOT).as_posix()}:{line}": name
                 for p in guarded_modules() for line, name in forbidden_imports(p.read_text(encoding="utf-8"))}
    assert offenders == {}
