"""The one exception type that avader raises for expected problems.

Bad input files, bad options, refused overwrites and similar user-facing problems raise
:class:`AvaderError` with a one-line message naming the file or key and the problem.
The command line prints that line as ``avader: error: ...`` and exits non-zero without
a traceback. Anything else that escapes is a bug.
"""

__all__ = ["AvaderError"]


class AvaderError(Exception):
    """An expected, user-facing problem (bad file, bad option, refused overwrite)."""
