"""The package's layers: the study's definition is the floor the stages stand on (study/ imports no
stage package), the packages import each other without a circle, and the config schema's benchmark
names are eval's registry (config validation no longer asks eval)."""

from __future__ import annotations

import ast
import copy
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from llava_gemma.errors import ConfigError
from llava_gemma.eval.benchmarks import BENCHMARKS
from llava_gemma.study.config import SCHEMA_PATH, validate_config

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "llava_gemma"
REPO = PACKAGE.parents[1]


def _imported(path: Path) -> set[str]:
    """Every llava_gemma module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("llava_gemma")}


def test_study_imports_no_stage():
    files = sorted((PACKAGE / "study").rglob("*.py"))
    assert len(files) >= 8
    wrong = {f"{f.relative_to(PACKAGE)} -> {m}" for f in files for m in _imported(f)
             if not (m.startswith("llava_gemma.study") or m == "llava_gemma.errors")}
    assert not wrong, sorted(wrong)


def _package_graph() -> dict[str, set[str]]:
    """Top-level part (package or module) -> the parts it imports, lazy imports included."""
    graph = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        source = parts[0] if len(parts) > 1 else path.stem
        graph[source] |= {m.split(".")[1] for m in _imported(path) if "." in m} - {source}
    return graph


def test_packages_import_each_other_without_a_circle():
    graph, done, path = _package_graph(), set(), []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert {"study", "train", "data", "cli"} <= done


def test_schema_names_the_registered_benchmarks():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    names = schema["properties"]["eval"]["properties"]["benchmarks"]["propertyNames"]["enum"]
    assert sorted(names) == sorted(BENCHMARKS)


def test_unknown_benchmark_is_refused():
    raw = yaml.safe_load((REPO / "toy.yaml").read_text())
    bad = copy.deepcopy(raw)
    bad["eval"]["benchmarks"]["textvqa"] = {}
    validate_config(raw)
    with pytest.raises(ConfigError, match="textvqa"):
        validate_config(bad)
