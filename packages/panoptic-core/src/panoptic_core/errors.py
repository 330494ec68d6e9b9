"""The error type of panoptic-core."""

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Corrupt, inconsistent or unreadable dataset files; the message names the file."""
