"""Lines of package code at one or more git revisions: every line, and code lines (no blank, comment or docstring).

    python scripts/lines_of_code.py 115e459^ HEAD

The packages are the installed ones users import (tests, benchmarks, scripts and the loopback servers aside).
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

PACKAGES = ("agents", "conf", "environment", "experiment", "memory", "training")
NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers of every module, class and function docstring."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, first.end_lineno + 1))  # type: ignore[operator]
    return lines


def code_lines(source: str) -> int:
    """Lines holding a token that is neither a comment nor part of a docstring."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstring_lines(ast.parse(source)))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def count(rev: str) -> dict[str, tuple[int, int]]:
    """package → (all lines, code lines) of its .py files at `rev`."""
    totals: dict[str, tuple[int, int]] = {}
    for path in git("ls-tree", "-r", "--name-only", rev, "--", *PACKAGES).split():
        if path.endswith(".py"):
            source = git("show", f"{rev}:{path}")
            every, code = totals.get(path.split("/")[0], (0, 0))
            totals[path.split("/")[0]] = (every + source.count("\n"), code + code_lines(source))
    return totals


def main() -> None:
    revs = sys.argv[1:] or ["HEAD"]
    counts = {rev: count(rev) for rev in revs}
    counts_total = {rev: (sum(a for a, _ in c.values()), sum(b for _, b in c.values())) for rev, c in counts.items()}
    print(f"{'package':12}" + "".join(f"{rev:>22}" for rev in revs) + "   (all lines / code lines)")
    for package in (*PACKAGES, "total"):
        cells = [counts_total[r] if package == "total" else counts[r].get(package, (0, 0)) for r in revs]
        print(f"{package:12}" + "".join(f"{f'{every} / {code}':>22}" for every, code in cells))


if __name__ == "__main__":
    main()
