"""What every command-line entry point shares: bad input becomes one sentence and exit status 2."""

import sys


def run_cli(main, interrupted: str = "Interrupted.") -> None:
    """Run `main()`; a UserError prints its message and exits 2, Ctrl-C prints `interrupted` and exits 130."""
    from grokjax.errors import UserError

    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
