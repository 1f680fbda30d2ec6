"""Handwriting engine: Graves (2013), "Generating Sequences With Recurrent Neural Networks".

Qt-free. Importing this package is cheap: torch is imported by the submodules that need it.
"""

__version__ = "0.1.0"


class EngineError(Exception):
    """Base class for every error the engine reports to a user (bad input, bad file, ...)."""
