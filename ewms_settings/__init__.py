"""One typed reader for every component's environment settings (WMS, MQS, TMS, pilot).

A setting is declared once, as a dataclass field whose :func:`setting` names its environment variable, its
default, its bounds or choices and a one-line description; :func:`read` / :func:`load` parse an environment
mapping into the dataclass and :mod:`ewms_settings.tables` renders the documentation tables from the same fields.
"""

from ewms_settings.reader import (
    BOOLEANS,
    ConfigError,
    Setting,
    declared,
    load,
    read,
    read_one,
    setting,
    shell_words,
)

__all__ = [
    "BOOLEANS",
    "ConfigError",
    "Setting",
    "declared",
    "load",
    "read",
    "read_one",
    "setting",
    "shell_words",
]
