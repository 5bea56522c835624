"""Write the student release: the repo without reference solutions and hidden tests.

    python -m shared.grading.release OUT

Copies every file git tracks, except `labs/*/solution*/` folders; removes each test marked
`@pytest.mark.hidden` from the lab test modules (a module whose `pytestmark` is hidden is left
out whole); then tidies the imports those removals left unused and makes OUT a fresh git
repository with one commit. In the release, `make lab-N` grades `starter/` (the default when
no solution is present) and `make test` checks the starter direction only.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE_MARKER = ".student-release"


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached"],
        cwd=root, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return [Path(p) for p in out.decode().split("\0") if p]


def is_solution(path: Path) -> bool:
    parts = path.parts
    return (
        len(parts) >= 3
        and parts[0] == "labs"
        and (parts[2] == "solution" or parts[2].startswith("solution_"))
    )


def _is_hidden_marker(node: ast.expr) -> bool:
    # Matches `pytest.mark.hidden` and `mark.hidden`, called or not.
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "hidden"


def _module_is_hidden(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            value = node.value
            values = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            if any(_is_hidden_marker(v) for v in values):
                return True
    return False


def strip_hidden(source: str) -> tuple[str | None, int]:
    """Return (source without hidden tests or None if the whole module is hidden, count)."""
    tree = ast.parse(source)
    if _module_is_hidden(tree):
        return None, 0
    lines = source.splitlines(keepends=True)
    spans: list[tuple[int, int]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if any(_is_hidden_marker(d) for d in node.decorator_list):
                    start = min(d.lineno for d in node.decorator_list)
                    spans.append((start, node.end_lineno or node.lineno))
                elif isinstance(node, ast.ClassDef):
                    visit(node.body)

    visit(tree.body)
    for start, end in sorted(spans, reverse=True):
        del lines[start - 1 : end]
    return "".join(lines), len(spans)


def unfinished_lab(path: Path, root: Path) -> bool:
    """A lab without a starter is still being written: students get it in a later release."""
    parts = path.parts
    return (
        len(parts) >= 2
        and parts[0] == "labs"
        and not (root / "labs" / parts[1] / "starter").is_dir()
    )


def make_release(out: Path, root: Path = REPO_ROOT) -> tuple[int, int]:
    """Write the release to `out`; return (files copied, hidden tests removed)."""
    files = [
        p
        for p in tracked_files(root)
        if not is_solution(p) and not unfinished_lab(p, root) and (root / p).is_file()
    ]
    removed = 0
    touched: list[Path] = []
    for rel in files:
        src, dst = root / rel, out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "labs" and "tests" in rel.parts and rel.suffix == ".py":
            text, count = strip_hidden(src.read_text())
            if text is None:
                continue
            if count:
                removed += count
                touched.append(dst)
            dst.write_text(text)
            shutil.copymode(src, dst)
        else:
            shutil.copy2(src, dst)
    (out / RELEASE_MARKER).write_text(
        "This is the student release: reference solutions and hidden tests are not included.\n"
    )
    if touched:
        # Hidden tests may have been the only users of an import; keep the release lint-clean.
        ruff = [sys.executable, "-m", "ruff"]
        subprocess.run([*ruff, "check", "--fix", "--select", "F401,I", "-q", *map(str, touched)],
                       cwd=out, check=False)  # fmt: skip
        subprocess.run([*ruff, "format", "-q", *map(str, touched)], cwd=out, check=False)
    git = ["git", "-c", "user.name=course", "-c", "user.email=course@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=out, check=True)
    subprocess.run([*git, "add", "-A"], cwd=out, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Student release"], cwd=out, check=True)
    return len(files), removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the student release")
    parser.add_argument("out", type=Path)
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        if not args.force:
            print(f"{out} exists and is not empty (use --force to replace it)", file=sys.stderr)
            return 1
        shutil.rmtree(out)
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        print("OUT must be outside the repository", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    copied, removed = make_release(out)
    print(f"student release written to {out}: {copied} files, {removed} hidden tests removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
