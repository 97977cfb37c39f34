"""The one Markdown table writer."""

from __future__ import annotations

import pytest

from unetpp.utils.tables import markdown_table


def test_markdown_table_aligns_numbers_right_by_default() -> None:
    text = markdown_table(["mode", "IoU %"], [["L1", 80.1], ["ensemble", "84.0"]])
    assert text.splitlines() == ["| mode | IoU % |", "|---|---:|", "| L1 | 80.1 |", "| ensemble | 84.0 |"]
    assert markdown_table(["a", "b", "c"], [], "llr").splitlines()[1] == "|---|---|---:|"


def test_markdown_table_refuses_ragged_rows() -> None:
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], "x")
