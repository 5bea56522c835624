"""Write the student release for one week: the repo up to lab N, without what grades students.

    python -m shared.grading.release OUT [--upto N] [--force]

Copies every file git tracks, except:

- labs after lab N (`--upto`; default: every lab that has a starter): a later lab's starter is
  an earlier lab's solution, so it must not reach students before that week;
- `labs/*/solution*/` (reference solutions) and `labs/*/variants/` (known-bug patches of them);
- tests marked `@pytest.mark.hidden` (a module whose `pytestmark` is hidden is left out whole);
- the README's instructor sections (between `<!-- instructors -->` and `<!-- /instructors -->`);
  links to labs that are not released become "(coming)".

It refuses a working tree with uncommitted or untracked changes under `labs/` (an experiment
in a starter would ship to students) unless `--force` is given. OUT is created, or replaced
when it holds an earlier release. The result is a fresh git repository with one commit, in
which `make lab-N` grades `starter/` and `make test` checks the harness, lint and types and
grades the starters without expecting them to fail.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE_MARKER = ".student-release"
INSTRUCTORS = re.compile(r"<!-- instructors -->.*?<!-- /instructors -->\n?", re.S)
# Words a student README must not contain once the instructor sections are gone.
INSTRUCTOR_WORDS = ("selfcheck", "solution/", "solution*/", "variants/")


class ReleaseError(RuntimeError):
    """The release cannot be written as asked; the message says why and what to do."""


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached"],
        cwd=root, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return [Path(p) for p in out.decode().split("\0") if p]


def dirty_lab_paths(root: Path) -> list[str]:
    """Uncommitted or untracked changes under labs/ (`git status`), one line each."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "labs"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if line.strip()]


def is_solution(path: Path) -> bool:
    parts = path.parts
    return (
        len(parts) >= 3
        and parts[0] == "labs"
        and (parts[2] == "solution" or parts[2].startswith("solution_"))
    )


def is_variant(path: Path) -> bool:
    parts = path.parts
    return len(parts) >= 3 and parts[0] == "labs" and parts[2] == "variants"


def lab_number(path: Path) -> int | None:
    parts = path.parts
    if len(parts) >= 2 and parts[0] == "labs" and re.fullmatch(r"lab\d\d_\w+", parts[1]):
        return int(parts[1][3:5])
    return None


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


def student_readme(text: str, released: set[str]) -> str:
    """The root README without instructor sections; links to unreleased labs say "(coming)"."""
    text = INSTRUCTORS.sub("", text)

    def unlink(match: re.Match[str]) -> str:
        label, target = match[1], match[2]
        lab = re.match(r"labs/(lab\d\d_\w+)/", target)
        if lab and lab[1] not in released:
            return f"{label} (coming)"
        return match[0]

    text = re.sub(r"\[([^\]]+)\]\((labs/[^)]+)\)", unlink, text)
    left = [w for w in INSTRUCTOR_WORDS if w in text]
    if left:
        raise ReleaseError(
            f"README.md still mentions {', '.join(left)} outside an instructor section: put "
            "that text between <!-- instructors --> and <!-- /instructors -->"
        )
    return text


def released_labs(root: Path, upto: int | None) -> set[str]:
    """Lab folders in the release: those with a starter (others are still being written)."""
    labs = set()
    for lab in (root / "labs").glob("lab[0-9][0-9]_*"):
        number = int(lab.name[3:5])
        if (lab / "starter").is_dir() and (upto is None or number <= upto):
            labs.add(lab.name)
    return labs


def make_release(
    out: Path, root: Path = REPO_ROOT, *, upto: int | None = None, force: bool = False
) -> tuple[int, int]:
    """Write the release to `out`; return (files copied, hidden tests removed)."""
    if not force and (dirty := dirty_lab_paths(root)):
        shown = "\n  ".join(dirty[:10]) + ("\n  ..." if len(dirty) > 10 else "")
        raise ReleaseError(
            "labs/ has uncommitted or untracked changes, which would ship to students as they "
            f"are (an experiment in a starter, say):\n  {shown}\n"
            "Commit or remove them, or release anyway with FORCE=1 (--force)."
        )
    released = released_labs(root, upto)
    if upto is not None and not any(int(name[3:5]) == upto for name in released):
        raise ReleaseError(f"there is no lab {upto} with a starter to release")
    files = []
    for p in tracked_files(root):
        number = lab_number(p)
        if number is not None and p.parts[1] not in released:
            continue
        if is_solution(p) or is_variant(p) or not (root / p).is_file():
            continue
        files.append(p)
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
        elif rel == Path("README.md"):
            dst.write_text(student_readme(src.read_text(), released))
        else:
            shutil.copy2(src, dst)
    (out / RELEASE_MARKER).write_text(
        "This is the student release: reference solutions, hidden tests and known-bug variants "
        f"are not included. Labs: {', '.join(sorted(released))}.\n"
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
    parser.add_argument("--upto", type=int, default=None, help="last lab released (default: all)")
    parser.add_argument(
        "--force", action="store_true", help="release even with uncommitted changes under labs/"
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        print("OUT must be outside the repository", file=sys.stderr)
        return 1
    if out.exists() and any(out.iterdir()):
        if not (out / RELEASE_MARKER).exists():
            print(f"{out} exists, is not empty and is not an earlier release: choose another OUT",
                  file=sys.stderr)  # fmt: skip
            return 1
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        copied, removed = make_release(out, upto=args.upto, force=args.force)
    except ReleaseError as exc:
        shutil.rmtree(out, ignore_errors=True)
        print(f"release refused: {exc}", file=sys.stderr)
        return 1
    week = f" up to lab {args.upto}" if args.upto else ""
    print(f"student release{week} written to {out}: {copied} files, {removed} hidden tests removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
