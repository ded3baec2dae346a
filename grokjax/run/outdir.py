"""Results directories: locked while written, created whole, replaced only once the new results are complete,
never left with temporary files, and every fault of the environment turned into one sentence.

One mechanism for every script (sweep, LLC, Jacobian, figures, the analyses to come):

- `locked(root)`: an OS lock (`flock`) on the file `.NAME.lock` beside the directory, held while a process writes
  it. A second writer is refused with one sentence naming the holder's PID (read from the lock file); a killed
  holder's lock is released by the operating system, so a lock is never stale. Taking it cleans up after an
  earlier writer that was killed: temporary files are removed and a half-done replacement is undone (`recover`).
  The lock file sits beside the directory, not in it, so it covers the directory's creation and replacement, and
  it is removed when released.
- `stage_path(root)` and `commit(stage, root)`: a new or replacing results directory is written as `.NAME.new`
  beside `root` and swapped in when complete: old results stay in place until the new ones are complete.
  `replace_directory` does both for a directory written all at once (the Jacobian).
- `guard(hint)`: Ctrl-C (or SIGTERM), a full disk or another OSError, running out of memory, a dead worker
  process (a `Fault`) become one sentence that ends with `hint()`: what was kept, and the command to continue.
- `check_writable`, `check_replaceable`, `refuse_existing`, `check_disk` refuse up front, before anything is
  written; `write_together` writes several files that belong together, all or none.
- `event(name)`: every write step of the results calls it (storage's atomic writes, commits, the sweep's
  merge); a hook set with `set_event_hook` lets tests interrupt or kill a run at any chosen step.

Only the standard library: the figures import this without jax.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from grokjax.errors import Interrupted, UserError

_hook: Callable[[str], None] | None = None


class Fault(UserError):
    """A fault of the environment (a worker process died, a saved file is corrupt): one sentence, to which
    `guard` adds what was kept and how to continue."""


def set_event_hook(hook: Callable[[str], None] | None):
    """Call `hook(name)` at every write step (None: none); returns the previous hook. For fault-injection tests."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def event(name: str) -> None:
    """A write step of a results directory is about to happen (see `set_event_hook`)."""
    if _hook is not None:
        _hook(name)


def atomic_write(path: Path, write: Callable) -> None:
    """Write a file whole or not at all: `write(f)` fills `.NAME.tmpPID` beside it, which is synced and renamed
    into place (a temporary file left by a killed process is removed by `recover`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    event(f"write {path.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        event(f"rename {path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _absolute(root) -> Path:
    return Path(os.path.abspath(root))


def _sibling(root, suffix: str) -> Path:
    root = _absolute(root)
    return root.with_name(f".{root.name}.{suffix}")


def lock_path(root) -> Path:
    """The lock file of a results directory: `.NAME.lock` beside it."""
    return _sibling(root, "lock")


def stage_path(root) -> Path:
    """Where new results for `root` are written until they are complete: `.NAME.new` beside it."""
    return _sibling(root, "new")


def old_path(root) -> Path:
    """Where `commit` puts the old results for the instant of the swap: `.NAME.old` beside it."""
    return _sibling(root, "old")


def _holder(fd: int) -> str:
    """Who holds the lock, from the lock file's contents (the holder writes them right after locking)."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
        if text:
            pid, host = text[0], text[1] if len(text) > 1 else ""
            return f"PID {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
        time.sleep(0.05)
    return "a process that has not written its PID yet"


def _lock(path: Path, root: Path) -> int:
    """An open file descriptor of `path`, exclusively flocked; UserError naming the holder if it is taken.

    The holder removes the file when it releases it, so whoever opened the file before that and locks it after
    checks that the path still names the file it locked, and otherwise tries again."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"Cannot write to the output directory {root}: {e.strerror or e}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise UserError(f"Cannot lock the output directory {root}: {e.strerror or e}.") from None
            holder = _holder(fd)
            os.close(fd)
            raise UserError(f"{root} is being written by another process ({holder}); wait for it to finish, or "
                            f"stop it, and run again.") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise UserError(f"Cannot lock the output directory {root}: its lock file keeps changing.")


@contextlib.contextmanager
def locked(root):
    """Hold the lock of the results directory `root` (see the module docstring) and clean up after any earlier,
    killed writer (`recover`). Parent directories are created if missing, and removed again if nothing was
    written into them."""
    root = _absolute(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"The output path {root} exists and is not a directory.")
    check_writable(root)
    created = []
    parent = root.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot write to the output directory {root}: {e.strerror or e}.") from None
    path = lock_path(root)
    try:
        fd = _lock(path, root)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        recover(root)
        yield root
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
        _remove_empty(created)


def _remove_empty(dirs) -> None:
    for d in dirs:  # innermost first
        try:
            d.rmdir()
        except OSError:
            return


TEMPORARY = (".tmp", ".partial")
"""A name starting with '.' and holding one of these is a temporary file of an atomic write."""
TEMPORARY_DIRS = (".merge", ".chunks.done")


def is_temporary(name: str) -> bool:
    return (name.startswith(".") and any(t in name for t in TEMPORARY)) or name in TEMPORARY_DIRS or \
        "orbax-checkpoint-tmp" in name


def remove(path: Path) -> None:
    """Remove a file or a directory tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def recover(root) -> None:
    """Undo what a killed writer of `root` left (call with the lock held): a replacement stopped between its two
    renames is rolled back (the old results return; a complete new directory stays staged, for the sweep's
    --resume to put in place), and the temporary files of atomic writes are removed from the directory, its
    staged replacement and their chunks/ and figures/."""
    root = _absolute(root)
    old = old_path(root)
    if old.exists():
        if root.exists():
            remove(old)
        else:
            os.replace(old, root)
    for base in (root, stage_path(root)):
        for d in (base, base / "chunks", base / "figures"):
            if d.is_dir():
                for entry in d.iterdir():
                    if is_temporary(entry.name):
                        remove(entry)
    for entry in root.parent.iterdir():  # the pre-stage temporary siblings of older versions
        if entry.name.startswith(f".{root.name}.tmp"):
            remove(entry)


def commit(stage: Path, root: Path) -> None:
    """Put the complete directory `stage` in the place of `root`: the old `root` (if any) is renamed aside, the new
    one renamed into place, and only then the old one deleted. An interrupt between the two renames puts the
    old one back; a kill there is undone by `recover` at the next lock."""
    root, old = _absolute(root), old_path(root)
    event("commit")
    moved = False
    try:
        if root.exists():
            os.replace(root, old)
            moved = True
            event("commit: old results moved aside")
        os.replace(stage, root)
    except BaseException:
        if moved and not root.exists():
            os.replace(old, root)
        raise
    event("commit: new results in place")
    remove(old)


def check_writable(path: Path) -> None:
    """UserError unless `path` (or, if it does not exist yet, its nearest existing ancestor) is a writable directory."""
    ancestor = Path(path).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise UserError(f"Cannot write to the output directory {path}: {ancestor} is not a writable directory.")


def free_disk_bytes(path) -> int:
    """Bytes free on the filesystem of `path` (or of its nearest existing ancestor)."""
    ancestor = _absolute(path)
    while not ancestor.exists():
        ancestor = ancestor.parent
    return shutil.disk_usage(ancestor).free


def size(n_bytes: float) -> str:
    """'27.0 KiB', '16.0 GiB': a byte count for messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:,.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return ""


def check_disk(path, need: float, what: str, option: str) -> None:
    """UserError if `need` bytes (`what`, e.g. 'the results of 10 runs') do not fit the free space at `path`."""
    free = free_disk_bytes(path)
    if need > free:
        raise UserError(f"{what[0].upper()}{what[1:]} need at least {size(need)} of disk, more than the {size(free)} "
                        f"free at {path}: {option}.")


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
        event("write together: renaming")
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
    """Have `fill(stage)` write a whole results directory into its stage beside `root`, then `commit` it: an
    interruption leaves the old or the new results, never none. Call with `locked(root)` held."""
    root = _absolute(root)
    stage = stage_path(root)
    remove(stage)
    try:
        stage.mkdir(parents=True)
        fill(stage)
        commit(stage, root)
    except OSError as e:
        raise UserError(f"Cannot write the results to {root}: {e.strerror or e}.") from None
    finally:
        remove(stage)


@contextlib.contextmanager
def guard(hint: Callable[[], str]):
    """Turn what the environment does to a run into one sentence ending with `hint()` (what was kept and how to
    continue, e.g. 'finished chunks are saved in DIR: run again with --resume --out DIR to continue'):
    Ctrl-C or SIGTERM (`Interrupted`, exit 130), an OSError such as a full disk, running out of host or device
    memory, and a `Fault` (UserError, exit 2)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted; {hint()}.") from None
    except Fault as e:
        raise UserError(f"{str(e).rstrip('.')}; {hint()}.") from None
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        raise UserError(f"Could not write{where} ({e.strerror or e}); {hint()}.") from None
    except MemoryError:
        raise UserError(f"This process ran out of memory; {hint()}.") from None
    except Exception as e:
        if type(e).__name__ not in ("XlaRuntimeError", "JaxRuntimeError"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"The computation failed on the device ({first.rstrip('.')}); {hint()}.") from None
