"""The one error type for bad input, and its kinds.

`InputError` means the user's input is wrong: a file, an option, a config value, an output
path, a request body. Its message names what was wrong, where (file and line, option or field)
and what was expected. The CLIs catch it (and only it) to print one line and exit 2; the service
answers 4xx for it. Anything else that escapes is a bug in this code and is reported as one.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message names the input."""


class ConfigError(InputError):
    """An option or configuration value outside what it may be."""


class OutputError(InputError):
    """An output path that cannot be written."""
