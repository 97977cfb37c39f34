"""Markdown tables, the one way the project prints a table (readable on a terminal and in report.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A Markdown table of `rows` (one cell per header, written with ``str``).

    Args:
        headers: the column names.
        rows: the cells of each row, as many as `headers`.
        align: one letter per column, ``"l"`` (left) or ``"r"`` (right, for numbers); by default the first
            column left and the others right.

    Raises:
        ValueError: a row or `align` of another length than `headers` (a bug, not a user error).

    Example:
        >>> print(markdown_table(["mode", "IoU %"], [["L1", "80.1"], ["ensemble", "84.0"]]))
        | mode | IoU % |
        |---|---:|
        | L1 | 80.1 |
        | ensemble | 84.0 |
    """
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} must give 'l' or 'r' for each of the {len(headers)} columns")
    lines = [_line(headers), "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells for {len(headers)} columns: {list(row)!r}")
        lines.append(_line(row))
    return "\n".join(lines)


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


__all__ = ["markdown_table"]
