"""The libraries' dependencies go one way: ``search_spaces`` and ``meta`` import nothing of ``nas`` nor of each
other, and ``fsnas_core`` imports none of them (read from the source, so a lazy import inside a function counts)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"search_spaces": {"nas", "meta"}, "meta": {"nas", "search_spaces"},
             "fsnas_core": {"nas", "meta", "search_spaces"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("library", sorted(FORBIDDEN))
def test_a_library_imports_nothing_above_or_beside_it(library):
    files = sorted((ROOT / library).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & FORBIDDEN[library]) for f in files}
    assert {f: names for f, names in bad.items() if names} == {}


def test_no_source_file_is_over_400_lines():
    long = {str(f.relative_to(ROOT)): n for lib in ("nas", "meta", "search_spaces", "fsnas_core", "scripts")
            for f in (ROOT / lib).rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert long == {}
