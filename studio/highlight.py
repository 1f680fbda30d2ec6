"""Marks characters the model cannot write, before writing (QSyntaxHighlighter)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QSyntaxHighlighter, QTextCharFormat


class UnsupportedHighlighter(QSyntaxHighlighter):
    def __init__(self, document, alphabet):
        super().__init__(document)
        self.alphabet = alphabet
        self.fmt = QTextCharFormat()
        self.fmt.setBackground(QColor(255, 170, 170))
        self.fmt.setForeground(QColor(150, 0, 0))
        self.fmt.setFontUnderline(True)

    def set_alphabet(self, alphabet) -> None:
        self.alphabet = alphabet
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:  # noqa: N802 - Qt override
        for pos, _c in self.alphabet.unsupported(text):
            self.setFormat(pos, 1, self.fmt)
