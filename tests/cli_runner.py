"""Running a script's `main` in the test process, as its command line would (exit status 2 for bad input)."""

from grokjax.cli import run_cli


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """Exit status (0 when `main` returns), stdout and stderr of `main(argv)` under `run_cli`."""
    capsys.readouterr()
    try:
        run_cli(lambda: main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
