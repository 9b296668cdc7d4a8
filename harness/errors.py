"""User errors: problems with what was asked for, reported as one line without a traceback.

``harness`` (``harness/cli.py`` ``main``) prints any :class:`UserError` as
``harness: error: <message>`` and exits 2; ``--debug`` shows the traceback instead.
Module-specific errors (``ConfigError``, ``SpecError``, ``PoseDataError``...) derive
from it, so callers can still catch the narrower class. Bugs stay tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a request this machine cannot honour; the message names the key,
    file or step and says what to do."""


class MachineError(UserError, RuntimeError):
    """A run shape this machine cannot run (dp/ddp over more devices than it has,
    nccl without CUDA...)."""


# OS errors that mean a bad path or permission given by the user, not a bug.
USER_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)


def is_user_error(error: BaseException) -> bool:
    """True for errors that ``harness`` reports as one line."""
    if isinstance(error, (UserError, *USER_OS_ERRORS)):
        return True
    # Read-only file systems and full disks surface as plain OSError with an errno.
    import errno

    return isinstance(error, OSError) and error.errno in (
        errno.EROFS,
        errno.ENOSPC,
        errno.EACCES,
        errno.ENAMETOOLONG,
        errno.EDQUOT,
    )


def one_line(error: BaseException) -> str:
    """The error's message on one line (OSError: with its file name)."""
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.filename:
        text = f"{error.strerror or error}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = "; ".join(lines) or type(error).__name__
    return joined if len(joined) <= 600 else joined[:599] + "…"
