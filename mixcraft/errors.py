"""User-facing errors: one line that says what, where, why and how to fix it.

The CLI catches `UserError`, prints its message and exits with code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (recipe, config, paths, data). Printed without a traceback."""

    exit_code = 2

