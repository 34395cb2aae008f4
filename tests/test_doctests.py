"""The examples in the packages' docstrings run and say what they show (every module with a ``>>>`` example)."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("designers", "tasks", "flows", "advdesign")
    for path in (ROOT / package).rglob("*.py")
    if ">>> " in path.read_text()
)


def test_the_packages_have_examples():
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
