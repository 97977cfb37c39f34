"""The "compare depths" table of the dock widget: one row per mode (the paper's Fig. 5 on the user's image).

Columns: the mode, the pruned model's parameters, the latency on this machine, IoU and Dice against the
ground-truth layer ("—" where there is none). Kept apart from the widget's form and its runs: it only shows
the rows :func:`unetpp.napari.compare.compare_depths` returns.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from .compare import Row

COLUMNS = ("mode", "parameters", "latency", "IoU", "Dice")  # latency: the model's time on this machine


def latency_text(seconds: float) -> str:
    """Milliseconds under ten seconds, seconds above: what a user reads at a glance."""
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


class DepthTable(QTableWidget):
    """Read-only; mode, parameters and latency as wide as their text, IoU and Dice share the rest."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for column in (0, 1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

    def show_rows(self, rows: list[Row]) -> None:
        """Replace the table's content with `rows`, numbers aligned right."""
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = (
                row.result.mode,
                "—" if row.parameters is None else f"{row.parameters:,}",
                latency_text(row.result.seconds),
                "—" if row.iou is None else f"{row.iou:.3f}",
                "—" if row.dice is None else f"{row.dice:.3f}",
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                self.setItem(r, c, item)
