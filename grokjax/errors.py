"""The one exception type that reaches users as a sentence, not a traceback."""


class UserError(Exception):
    """Bad input from the user: the CLI prints the message and exits with status 2."""
