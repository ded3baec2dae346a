"""Results directories and files: refused when they would mix or lose results, written whole or not at all.

One mechanism for every script: `check_writable` before any work, `refuse_existing` for result files added to
a directory (the LLC beside a sweep), `write_together` for several files that belong together, and
`replace_directory` for a directory written at the end (a new one, or a replacement of our own earlier results:
the old one stays in place until the new one is complete).
"""

import os
import shutil
from pathlib import Path
from typing import Callable

from grokjax.errors import UserError


def check_writable(path: Path) -> None:
    """UserError unless `path` (or, if it does not exist yet, its nearest existing ancestor) is a writable directory."""
    ancestor = Path(path).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise UserError(f"Cannot write to the output directory {path}: {ancestor} is not a writable directory.")


def check_replaceable(root: Path, overwrite: bool, ours: bool, kind: str, other_choice: str = "") -> bool:
    """Whether `root` holds results to replace: False if it is absent or empty; with `overwrite`, True if it holds
    our own results (`ours`: of `kind`); else UserError (`other_choice`, e.g. ' --resume to continue it or', is
    offered beside --overwrite)."""
    if root.exists() and not root.is_dir():
        raise UserError(f"The output path {root} exists and is not a directory.")
    if not root.exists() or not any(root.iterdir()):
        return False
    if not overwrite:
        raise UserError(f"The output directory {root} already exists; pass{other_choice} --overwrite to replace it.")
    if not ours:
        raise UserError(f"Refusing to overwrite {root}: it is not a {kind} results directory.")
    return True


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """UserError if any of `paths` exists and `overwrite` is off, or their directory is not writable."""
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{', '.join(existing)} already exist in {paths[0].parent}; pass --overwrite to replace them.")
    check_writable(paths[0].parent)


def write_together(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file (`writer(path)` writes one) or none: each goes to a temporary name first and all are
    renamed once all are written; on failure the temporary files are removed (earlier files stay as they were)
    and UserError is raised."""
    partial = {path: path.with_name(f".{path.name}.partial{os.getpid()}") for path in writers}
    try:
        for path, write in writers.items():
            write(partial[path])
        for path, tmp in partial.items():
            os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"Could not write the results to {next(iter(writers)).parent} ({e.strerror or e}), so none "
                        f"were saved.") from None
    finally:
        for tmp in partial.values():
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def replace_directory(root: Path, fill: Callable[[Path], None]) -> None:
    """Have `fill(tmp)` write a whole results directory into a temporary sibling, then rename it to `root`.

    An existing `root` is first renamed aside (`.NAME.old<pid>`), the new one renamed into place, and only then
    the old one deleted: an interruption leaves the old or the new results, never none.
    """
    root = Path(root)
    tmp, old = root.with_name(f".{root.name}.tmp{os.getpid()}"), root.with_name(f".{root.name}.old{os.getpid()}")
    try:
        tmp.mkdir(parents=True)
        fill(tmp)
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
    except OSError as e:
        if old.exists() and not root.exists():
            os.replace(old, root)  # the new results could not be put in place: keep the old ones
        raise UserError(f"Cannot write the results to {root}: {e.strerror or e}.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
