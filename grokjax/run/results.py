"""Reading saved results: one place that turns a results directory into arrays, or one clear sentence.

Only numpy and JSON (never jax), so figures can be redrawn anywhere the results can be read.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from grokjax.errors import UserError

RESULT_FILES = ("config.json", "traces.npz", "seeds.npz", "outcome.json")


class DivergedRunsWarning(UserWarning):
    """Some runs of the sweep an analysis reads diverged in training (non-finite loss or parameters)."""


NEEDED = {"traces": ("epochs", "group_acc"), "seeds": ("grokked", "final_train_loss", "final_weight_norm")}


def read_json(path: Path) -> dict:
    """A JSON file of the results; unreadable or malformed becomes one sentence naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read {path} as JSON: {e}.") from e


def read_npz(path: Path, needed, writer: str = "a sweep") -> dict:
    """All arrays of an .npz file, which must hold `needed`; anything else becomes one sentence naming the file
    (and `writer`, what should have written it)."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, TypeError) as e:
        raise UserError(f"Cannot read {path}: it is not a numpy .npz archive of arrays.") from e
    absent = [k for k in needed if k not in arrays]
    if absent:
        raise UserError(f"{path} lacks the arrays {', '.join(absent)}; was it written by {writer}?")
    return arrays


def read_config_json(root: Path, key: str) -> dict | None:
    """The config.json of `root` if it is a results directory of the kind that has `key`, else None."""
    try:
        config = json.loads((Path(root) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and key in config else None


def diverged_of(seeds: dict) -> np.ndarray:
    """(runs,) booleans: the runs whose loss or parameters became non-finite, as seeds.npz flags them
    ('diverged'); for results written before the flag, the runs whose final training loss or weight norm is
    not finite."""
    if "diverged" in seeds:
        return np.asarray(seeds["diverged"], bool)
    return ~(np.isfinite(seeds["final_train_loss"]) & np.isfinite(seeds["final_weight_norm"]))


def diverged_warning(sweep: dict, runs=None, what: str = "they are left out") -> str | None:
    """A warning naming how many of `runs` (default all) of `sweep` diverged and what the analysis does with
    them; None if none did."""
    diverged = sweep["diverged"] if runs is None else sweep["diverged"][runs]
    if not diverged.any():
        return None
    return (f"{int(diverged.sum())} of {len(diverged)} runs of {sweep['dir']} diverged during training (non-finite "
            f"loss or parameters): {what}.")


def load_sweep(results_dir) -> dict:
    """The saved results of a sweep as one dict: config, traces, seeds, outcome, group_names, threshold, dir, and
    diverged (runs,), the runs whose loss or parameters became non-finite."""
    root = Path(results_dir)
    if not root.is_dir():
        raise UserError(f"No sweep results in {root}: the directory does not exist.")
    missing = [name for name in RESULT_FILES if not (root / name).is_file()]
    unfinished = (root / "chunks").is_dir()
    if missing:
        hint = " (an unfinished sweep? continue it with --resume)" if unfinished else ""
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(f"No sweep results in {root}: {', '.join(missing)} {verb} missing{hint}.")
    if unfinished:
        raise UserError(f"The sweep in {root} is unfinished (its chunks are not all merged): continue it with "
                        f"--resume --out {root}.")
    config = read_json(root / "config.json")
    try:
        group_names = list(config["task"]["group_names"])
        threshold = float(config["sweep"]["grok_threshold"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{root / 'config.json'} has no task.group_names or sweep.grok_threshold.") from e
    traces = read_npz(root / "traces.npz", NEEDED["traces"])
    seeds = read_npz(root / "seeds.npz", NEEDED["seeds"])
    return {"dir": root, "config": config, "traces": traces, "seeds": seeds, "outcome": read_json(root / "outcome.json"), "group_names": group_names,
            "threshold": threshold, "diverged": diverged_of(seeds)}
