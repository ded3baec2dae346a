"""Atomic writes of the arrays, JSON and parameters of a results directory.

Every file appears whole or not at all: it is written beside its final name and
renamed into place. Parameters of all seeds are one orbax checkpoint, which is
atomic in the same way.
"""

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint", "scipy")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda f: f.write(json.dumps(obj, indent=2).encode() + b"\n"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_arrays(path: Path, arrays: dict) -> None:
    _atomic(Path(path), lambda f: np.savez(f, **arrays))


def read_arrays(path: Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _checkpointer() -> ocp.StandardCheckpointer:
    """A checkpointer local to this process: in a multi-host sweep only process 0 reads and writes results."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me}))


def save_params(path: Path, params) -> None:
    """Save a PyTree of stacked parameters (seed axis first) as an orbax checkpoint."""
    with _checkpointer() as checkpointer:
        checkpointer.save(Path(path).absolute(), params)
        checkpointer.wait_until_finished()


def load_params(path: Path):
    """Load the parameters saved by `save_params` as numpy arrays."""
    with _checkpointer() as checkpointer:
        return checkpointer.restore(Path(path).absolute())


def named_leaves(tree) -> dict:
    """A PyTree's leaves by their path ('1.mu.w_left' for an optax state, 'w_left' for a flat parameter dict),
    the flat form in which chunks and checkpoints store parameters and optimizer states."""
    return {jax.tree_util.keystr(path, simple=True, separator="."): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def from_named_leaves(template, named: dict):
    """The PyTree of `template`'s structure whose leaves are `named[path]` (the inverse of `named_leaves`)."""
    paths = list(named_leaves(template))
    missing = [p for p in paths if p not in named]
    if missing:
        raise ValueError(f"saved state lacks {', '.join(missing[:3])}")
    return jax.tree.unflatten(jax.tree.structure(template), [named[p] for p in paths])


def environment() -> dict:
    """Package versions, Python, machine and git commit, recorded beside every result."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
        git = {"commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        git = {"commit": None, "dirty": None}
    return {"python": platform.python_version(), "machine": platform.machine(), "packages": versions, "git": git}
