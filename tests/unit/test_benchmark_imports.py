"""Benchmarks import the project and their own helpers, never the test suite: a change to the
tests cannot break a measurement, and the benchmarks run without the tests' fixtures."""

from __future__ import annotations

import ast

from tests.conftest import REPO


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_benchmark_imports_the_test_suite() -> None:
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert len(scripts) > 10
    found = {
        script.name: sorted(
            m for m in imported_modules(script.read_text()) if m.split(".")[0] == "tests"
        )
        for script in scripts
    }
    assert {name: modules for name, modules in found.items() if modules} == {}
