"""The exceptions that reach users as a sentence, not a traceback."""


class UserError(Exception):
    """Bad input from the user, or a fault of the environment: the CLI prints the message and exits with status 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) with a message saying what was kept and how to continue; the CLI prints it and exits
    with status 130."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
