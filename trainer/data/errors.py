"""DataError: bad input data, raised by every dataset reader (and re-exported by trainer.data.records).

Its own module so that trainer.data.root (which opens files) and trainer.data.records (what readers
yield) can both raise it without importing each other.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message starts with where: `file:line: what is wrong`."""
