"""The write session model: the latest snapshot of the page being written, and the cursor.

Views take a WriteSession in __init__. The worker replaces `latest` (cheap: a reference);
views pull it on their own QTimer, so a fast worker never floods the UI thread.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal


class WriteSession(QObject):
    started = Signal()  # a new page has begun (views clear)
    finished = Signal(object)  # the final WriteSnapshot
    cursor_changed = Signal(int)  # point index on the timeline, -1 = none

    def __init__(self, parent=None):
        super().__init__(parent)
        self.latest = None  # WriteSnapshot or None
        self.version = 0
        self.cursor = -1
        self.running = False

    def begin(self) -> None:
        self.latest = None
        self.version += 1
        self.running = True
        self.set_cursor(-1)
        self.started.emit()

    def update(self, snapshot) -> None:
        self.latest = snapshot
        self.version += 1

    def finish(self, snapshot) -> None:
        if snapshot is not None:
            self.update(snapshot)
        self.running = False
        self.finished.emit(self.latest)

    def set_cursor(self, index: int) -> None:
        if index != self.cursor:
            self.cursor = index
            self.cursor_changed.emit(index)
