"""The root of the failures a user can act on.

Every error the library raises on purpose (bad input, a store or registry that refuses, a gate
or lock that says no) derives from `PneumoError`, beside the built-in base it had (ValueError,
RuntimeError...), so existing `except ValueError` code still holds. The CLI reports a
`PneumoError` in one place as one `error:` line; anything else is a bug and keeps its traceback
in the log file.
"""

from __future__ import annotations


class PneumoError(Exception):
    """A failure with a message meant for the user; `exit_code` is the CLI's exit status."""

    exit_code = 1
