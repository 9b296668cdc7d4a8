"""What may reach the sbatch script and the ``srun`` line, checked before anything is written.

Every value a cluster profile or a sweep puts into the script is checked here, with
an error that names the field:

- ``#SBATCH`` values (partition, account, qos, constraint, additional_parameters):
  no control characters (a newline would start a new script line), no whitespace
  (sbatch would read the rest as another option) and none of ``$ ` ' " \\ ;``, which
  no Slurm name or feature expression uses. ``additional_parameters`` keys must be
  option names (``[A-Za-z][A-Za-z0-9_-]*``).
- ``python``: words of plain path characters and ``$VAR``/``${VAR}`` references only,
  so ``$HOME/venv/bin/python -X faulthandler`` works and nothing else is run.
- ``setup`` lines are the profile's own shell commands and run as written, but may
  not hold control characters or command substitution (``$(...)``, backticks,
  ``<(...)``/``>(...)``): that is how a value pasted from elsewhere smuggles in a command.
- The sweep directory lands in ``#SBATCH --output``: no whitespace, control
  characters, ``%`` (sbatch's filename patterns) or shell-special characters.

Everything else a sweep carries (grid values, overrides, the base config) travels in
submitit's pickle, never through a shell, and run names are sanitised by
:mod:`harness.launcher.naming`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SBATCH_SPECIAL = re.compile(r"""[\s$`'"\\;]""")
_OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_VAR = r"\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\}"
_PYTHON_WORD = re.compile(rf"^(?:[A-Za-z0-9_./+=:@%,~-]|{_VAR})+$")
_SUBSTITUTION = re.compile(r"\$\(|`|<\(|>\(")
_PATH_SPECIAL = re.compile(r"""[\s$`'"\\;%]""")

_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte"}


def _control_name(text: str) -> str | None:
    found = _CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    return _CONTROL_NAMES.get(char, f"control character {char!r}")


def check_sbatch_value(field: str, value: Any, fail: Callable[[str], Exception]) -> None:
    """A value written as ``#SBATCH --<key>=<value>``; ``fail(message)`` builds the error."""
    if isinstance(value, bool) or isinstance(value, (int, float)) or value is None:
        return
    if not isinstance(value, str):
        raise fail(f"{field} must be a string, number or true, got {type(value).__name__} {value!r}")
    control = _control_name(value)
    if control:
        raise fail(f"{field} contains {control}, which would add a line to the sbatch script: {value!r}")
    special = _SBATCH_SPECIAL.search(value)
    if special:
        raise fail(
            f"{field} contains {special.group()!r} (whitespace and $ ` ' \" \\ ; are not allowed in "
            f"an #SBATCH value): {value!r}"
        )


def check_option_name(field: str, key: Any, fail: Callable[[str], Exception]) -> None:
    if not isinstance(key, str) or not _OPTION_NAME.match(key):
        raise fail(f"{field} key {key!r} is not an sbatch option name ([A-Za-z][A-Za-z0-9_-]*)")


def check_python(field: str, value: str, fail: Callable[[str], Exception]) -> str:
    """The command that starts Python on the nodes, as it goes into the srun line."""
    control = _control_name(value)
    if control:
        raise fail(f"{field} contains {control}: {value!r}")
    words = value.split(" ")
    for word in words:
        if word and not _PYTHON_WORD.match(word):
            raise fail(
                f"{field} word {word!r} may hold only path characters [A-Za-z0-9_./+=:@%,~-] and "
                "$VAR or ${VAR}; put anything more in a setup line or a wrapper script"
            )
    return " ".join(w for w in words if w)


def check_setup_line(field: str, line: Any, fail: Callable[[str], Exception]) -> None:
    if not isinstance(line, str):
        raise fail(f"{field} must be a string (one shell line), got {type(line).__name__}")
    control = _control_name(line)
    if control:
        raise fail(f"{field} contains {control}; give each shell line as its own list item: {line!r}")
    if _SUBSTITUTION.search(line):
        raise fail(
            f"{field} uses command substitution ($(...), backticks, <(...) or >(...)): {line!r}; "
            "put that logic in a script and `source` it"
        )


def check_profile_fields(values: dict[str, Any], fail: Callable[[str], Exception]) -> None:
    """Every field of a cluster profile mapping that reaches the sbatch script."""
    for key in ("partition", "account", "qos", "constraint"):
        if values.get(key) is not None:
            check_sbatch_value(f"profile key '{key}'", values[key], fail)
    if values.get("name") is not None:
        control = _control_name(str(values["name"]))
        if control:
            raise fail(f"profile key 'name' contains {control}")
    for i, line in enumerate(values.get("setup") or ()):
        check_setup_line(f"profile key 'setup' line {i + 1}", line, fail)
    for key, value in (values.get("additional_parameters") or {}).items():
        check_option_name("profile key 'additional_parameters'", key, fail)
        check_sbatch_value(f"profile key 'additional_parameters.{key}'", value, fail)


def check_sweep_dir(path: str | Path, fail: Callable[[str], Exception]) -> None:
    """The sweep directory appears in ``#SBATCH --output=`` and the srun line."""
    text = str(path)
    control = _control_name(text)
    if control:
        raise fail(f"sweep directory {text!r} contains {control}")
    special = _PATH_SPECIAL.search(text)
    if special:
        raise fail(
            f"sweep directory {text} contains {special.group()!r}, which sbatch's --output cannot "
            "take (no whitespace, %, $, quotes, backslash or ;); choose another --root"
        )


def check_job_name(name: str, fail: Callable[[str], Exception]) -> None:
    check_sbatch_value("sweep 'name' (the Slurm job name)", name, fail)
