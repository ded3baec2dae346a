"""Atomic writes of the arrays, JSON and parameters of a results directory.

Every file appears whole or not at all: it is written beside its final name (`.NAME.tmpPID`) and renamed into
place; a temporary file left by a killed process is removed by the next writer (`outdir.recover`). Large
arrays are written as a stream of row blocks (`NpyWriter`, `write_npz_files`), so a file of every run never
has to be in memory at once. Parameters and optimizer states of every run are a directory of .npy files, one
per leaf (`save_params`, `load_params`, which also reads the orbax checkpoints of earlier versions).
"""

import json
import os
import platform
import shutil
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from grokjax.run.outdir import atomic_write as _atomic

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint", "scipy")
LEAVES = "leaves.json"
"""The index of a parameter directory: {"format": "npy", "leaves": {leaf name: file name}}."""


def write_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda f: f.write(json.dumps(obj, indent=2).encode() + b"\n"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_arrays(path: Path, arrays: dict) -> None:
    _atomic(Path(path), lambda f: np.savez(f, **arrays))


def read_arrays(path: Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


class NpyWriter:
    """An .npy file of a known shape written block of rows by block of rows, in order: the header first, then each
    `write(block)` appends rows. `close()` checks every row was written; the file is then complete."""

    def __init__(self, path: Path, shape: tuple, dtype):
        self.path, self.shape, self.dtype, self.rows = Path(path), tuple(shape), np.dtype(dtype), 0
        self.file = open(self.path, "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False, "shape": self.shape})

    def write(self, block) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"rows of shape {block.shape} do not fit {self.path.name} of shape {self.shape}")
        self.file.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> None:
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name} got {self.rows} of {self.shape[0]} rows")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def abort(self) -> None:
        """Close the file, complete or not (closing twice does nothing)."""
        self.file.close()


def write_npz_files(path: Path, members: dict) -> None:
    """An .npz archive (as `np.savez` writes it: stored, not compressed) whose members are arrays or .npy files
    (paths), copied in blocks: memory stays flat however large the members are. Atomic."""

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, member in members.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                    if isinstance(member, (str, Path)):
                        with open(member, "rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
                    else:
                        np.lib.format.write_array(out, np.asarray(member), allow_pickle=False)

    _atomic(Path(path), write)


def leaf_file(name: str) -> str:
    return name.replace(os.sep, "_") + ".npy"


def write_params_index(path: Path, names) -> None:
    """The index of a parameter directory whose leaves `names` were written as `leaf_file(name)` (the last file
    written: a directory without it is incomplete)."""
    write_json(Path(path) / LEAVES, {"format": "npy", "leaves": {n: leaf_file(n) for n in names}})


def params_writers(path: Path, shapes: dict) -> dict:
    """`NpyWriter`s of a parameter directory to fill by rows: leaf name -> writer, from name -> (shape, dtype)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return {n: NpyWriter(Path(path) / leaf_file(n), shape, dtype) for n, (shape, dtype) in shapes.items()}


def save_params(path: Path, params) -> None:
    """Save a PyTree of stacked parameters (seed axis first) as a directory of .npy files, one per leaf (named by
    its path, `named_leaves`); written beside `path` and renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        named = named_leaves(params)
        for name, leaf in named.items():
            np.save(tmp / leaf_file(name), np.asarray(leaf), allow_pickle=False)
        write_params_index(tmp, named)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_params(path: Path, mmap: bool = False) -> dict:
    """The parameters saved by `save_params` (or by the sweep's merge) as numpy arrays, leaf name -> array
    (memory-mapped with `mmap`); an orbax checkpoint of earlier versions is restored as it was saved."""
    path = Path(path)
    if (path / LEAVES).is_file():
        index = read_json(path / LEAVES)["leaves"]
        return {name: np.load(path / file, mmap_mode="r" if mmap else None, allow_pickle=False)
                for name, file in index.items()}
    import orbax.checkpoint as ocp

    me = jax.process_index()  # local to this process: in a multi-host sweep only process 0 reads results
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with ocp.StandardCheckpointer(multiprocessing_options=options) as checkpointer:
        return checkpointer.restore(path.absolute())


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
