"""Handwriting Studio: the PySide6 + pyqtgraph desktop app over the Qt-free engine.

Importing this package is cheap; torch is only imported by worker threads when a model is
first needed, so the window appears first.
"""
