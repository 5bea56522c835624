"""A small reader of Dockerfiles and `.dockerignore` files, enough for the static checks.

`parse(text)` turns a Dockerfile into stages of instructions: line continuations joined,
comments and parser directives dropped, each instruction with its keyword, its raw arguments,
its flags (`--from=builder`) and, for the JSON ("exec") form, the parsed list.
`ignored(patterns, path)` answers whether a `.dockerignore` keeps `path` out of the build
context, with Docker's rules: patterns in order, the last match wins, `!` re-includes, `**`
matches any number of directories, and a pattern that matches a directory covers its content.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the arguments after flags, as written (continuations joined)
    flags: dict[str, str]
    line: int  # where it starts (1-based)
    exec_form: list[str] | None = None  # the JSON array, for CMD ["python", "-m", "app"]

    def __str__(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"line {self.line}: {self.keyword} {flags}{self.args}".strip()


@dataclass
class Stage:
    base: str  # the FROM image (or an earlier stage's name)
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


_FLAG = re.compile(r"--([a-z-]+)(?:=(\S+))?\s+")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined, comments dropped."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            continue
        if parts and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        out.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:
        out.append((start, " ".join(p for p in parts if p)))
    return out


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile; instructions before the first FROM (ARG) are dropped."""
    stages: list[Stage] = []
    for number, line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while m := _FLAG.match(rest + " "):
            flags[m.group(1)] = m.group(2) or ""
            rest = (rest + " ")[m.end() :].strip()
        exec_form = None
        if rest.startswith("["):
            try:
                value = json.loads(rest)
            except ValueError:
                value = None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                exec_form = value
        ins = Instruction(keyword, rest, flags, number, exec_form)
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0] if words else "", name=name, line=number))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def copy_sources(ins: Instruction) -> list[str]:
    """The source paths of a COPY/ADD from the build context (not --from), as written."""
    if ins.exec_form is not None:
        words = ins.exec_form
    else:
        try:
            words = shlex.split(ins.args)
        except ValueError:
            words = ins.args.split()
    return words[:-1]


# ------------------------------------------------------------------------- .dockerignore


def ignore_patterns(text: str) -> list[str]:
    lines = (ln.strip() for ln in text.splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/").removeprefix("./")
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    # A match on a directory covers everything under it.
    return re.compile(f"^{out}(?:/.*)?$")


def ignored(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves `path` (relative, with /) out."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if _pattern_regex(body).match(path):
            result = not negate
    return result
