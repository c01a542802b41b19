"""Error types. Each carries a one-line message meant for the user."""


class SirenCompressError(Exception):
    """Base class of every error the library raises on purpose."""


class InputError(SirenCompressError):
    """Bad input or usage: unreadable file, wrong dimensions, NaNs, mismatched gradients."""


class ArchiveError(InputError):
    """A `.sirz` file is corrupt, truncated, not an archive, or from an unknown format version."""


class OutputError(SirenCompressError):
    """An output cannot be written: it exists already (without force) or its folder is not writable."""


class SubjectsFailed(SirenCompressError):
    """A batch ran to the end but some subjects failed (each is recorded with its error)."""
