"""The cumulative regression: a lab re-runs earlier labs' contract tests on its own code.

Labs are progressive, so lab 3's implementation must still honour lab 1's and lab 2's
contracts. A lab declares this in its `tests/conftest.py`, with two plain tuples:

    CONTRACT = ("test_contract.py",)          # modules of this lab that later labs re-run
    REGRESSION = ("lab01_rest", "lab02_db")   # earlier labs whose CONTRACT modules run here

When pytest collects a lab's `tests/` folder, this plugin (loaded through `addopts` in
pyproject.toml) adds each CONTRACT module of each REGRESSION lab as one more module of the
folder. Those tests run against the current lab's implementation with the current lab's
fixtures (its conftest's `app_env`), keep their points, and are graded under the task
"Regression labNN_name: <task>". Their node ids read
`labs/lab03_cache/tests/regression/lab01_rest/test_items_contract.py::test_...`.

A re-run module may only use fixtures the current lab provides: the shared ones (`client`,
`db`, ...) and what the current lab's conftest defines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.labs import lab_dir_of


def declared(conftest: Path, name: str) -> tuple[str, ...]:
    """The tuple of strings a conftest assigns to `name` (empty if it assigns none)."""
    if not conftest.is_file():
        return ()
    for node in ast.parse(conftest.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
                raise pytest.UsageError(f"{conftest}: {name} must be a tuple of strings")
            return tuple(value)
    return ()


def regression_modules(tests_dir: Path) -> list[tuple[str, Path]]:
    """(origin lab, module path) for every module the lab of `tests_dir` re-runs."""
    modules = []
    for origin in declared(tests_dir / "conftest.py", "REGRESSION"):
        origin_tests = tests_dir.parent.parent / origin / "tests"
        contract = declared(origin_tests / "conftest.py", "CONTRACT")
        if not contract:
            raise pytest.UsageError(
                f"{tests_dir / 'conftest.py'}: REGRESSION names {origin}, but "
                f"{origin_tests / 'conftest.py'} declares no CONTRACT modules"
            )
        for name in contract:
            path = origin_tests / name
            if not path.is_file():
                raise pytest.UsageError(f"{origin_tests / 'conftest.py'}: CONTRACT names {name}, "
                                        "which does not exist")  # fmt: skip
            modules.append((origin, path))
    return modules


class RegressionModule(pytest.Module):
    """An earlier lab's test module, collected inside the current lab's tests folder."""

    origin: str

    @classmethod
    def from_parent(  # type: ignore[override]
        cls, parent: pytest.Collector, *, path: Path, origin: str
    ) -> RegressionModule:
        name = f"regression/{origin}/{path.name}"
        module: RegressionModule = super().from_parent(
            parent, path=path, name=name, nodeid=f"{parent.nodeid}/{name}"
        )
        module.origin = origin
        return module


class LabTests(pytest.Directory):
    """A lab's `tests/` folder: its own modules, then the modules its REGRESSION names."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        # What pytest's own `Dir` does (it cannot be subclassed): every entry in name order,
        # through the hooks, so conftests, ignores and other plugins apply as usual.
        ihook = self.ihook
        for entry in sorted(self.path.iterdir(), key=lambda p: p.name):
            if not self.session.isinitpath(entry) and ihook.pytest_ignore_collect(
                collection_path=entry, config=self.config
            ):
                continue
            if entry.is_dir():
                collector = ihook.pytest_collect_directory(path=entry, parent=self)
                if collector is not None:
                    yield collector
            elif entry.is_file():
                yield from ihook.pytest_collect_file(file_path=entry, parent=self)
        for origin, path in regression_modules(self.path):
            yield RegressionModule.from_parent(self, path=path, origin=origin)


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    lab = lab_dir_of(path)
    if lab is None or path != lab / "tests" or (path / "__init__.py").exists():
        return None
    if not declared(path / "conftest.py", "REGRESSION"):
        return None
    return LabTests.from_parent(parent, path=path)


def graded_lab(item: pytest.Item) -> Path | None:
    """The lab whose grade `item` counts towards: the lab of the folder that collected it."""
    for node in item.iter_parents():
        if isinstance(node, pytest.Directory):
            return lab_dir_of(node.path)
    return None


def origin_lab(item: pytest.Item) -> str | None:
    """For a re-run test, the earlier lab it comes from; None for a lab's own test."""
    for node in item.iter_parents():
        if isinstance(node, RegressionModule):
            return node.origin
    return None
