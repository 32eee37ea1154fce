"""What the CLI prints: tables that survive a pipe, JSON, and one-line errors.

On a terminal a table is drawn by rich, folding long cells instead of
cutting them. When stdout is not a terminal (a pipe, a file) it is printed
as plain columns separated by two spaces, every value whole, one row per
line, so ``grep``, ``awk`` and ``cut`` see what the agent said (the way
``gobgp`` prints). Errors are one line on stderr, ``error: ...``, never
wrapped, whatever the terminal width.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table


class PipeConsole(Console):
    """A console that never cuts: free text is not wrapped (``soft_wrap``), and a
    rich :class:`~rich.table.Table` given to :meth:`print` is written as plain
    columns when stdout is not a terminal (on a terminal, long cells fold)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if len(objects) == 1 and isinstance(objects[0], Table):
            t = objects[0]
            if not is_terminal():
                headers = [str(c.header) for c in t.columns]
                cols = [[str(v) for v in c._cells] for c in t.columns]
                rows = [list(r) for r in zip(*cols, strict=True)] if cols else []
                if t.title:
                    sys.stdout.write(f"{t.title}\n")
                sys.stdout.write(plain_table(headers, rows) + "\n")
                return
            for c in t.columns:
                c.overflow = "fold"
        super().print(*objects, **kwargs)


#: every line the CLI prints (tables too): nothing is cut when piped
console = PipeConsole(soft_wrap=True, highlight=False)


def is_terminal() -> bool:
    return sys.stdout.isatty()


def one_line(text: object) -> str:
    """``text`` on one line: newlines and runs of blanks become single spaces."""
    return " ".join(str(text).split())


def fail(message: object, code: int) -> NoReturn:
    """Print ``error: MESSAGE`` as one line on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def cell(value: object) -> str:
    """A value as a table cell: ``-`` for nothing, never a Python repr."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={cell(v)}" for k, v in value.items())
    return one_line(value)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest value, two spaces apart, nothing cut; the
    last column is not padded (no trailing blanks)."""
    texts = [[cell(v) if not isinstance(v, str) else (one_line(v) or "-") for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in texts:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], len(v))
    lines = []
    for r in [list(headers), *texts]:
        parts = [v.ljust(widths[i]) if i < len(r) - 1 else v for i, v in enumerate(r)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Print a table: rich on a terminal (long cells folded), plain columns otherwise."""
    if not is_terminal():
        if title:
            sys.stdout.write(title + "\n")
        sys.stdout.write(plain_table(headers, rows) + "\n")
        return
    t = Table(*headers, title=title)
    for c in t.columns:
        c.overflow = "fold"
    for r in rows:
        t.add_row(*(cell(v) if not isinstance(v, str) else (v or "-") for v in r))
    Console().print(t)


def human_duration(seconds: float | None) -> str:
    """``3d04h05m``, ``04:05:06`` below a day, ``never`` for None (the way BGP CLIs show up/down time)."""
    if seconds is None:
        return "never"
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days >= 7:
        return f"{days // 7}w{days % 7}d{hours:02d}h"
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"
