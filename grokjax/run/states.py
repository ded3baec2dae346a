"""Training states saved by a sweep, read back and trained further: the basis of perturbation and transplant
analyses, and of resuming a run exactly where it stopped.

`load_states(root)` returns the final `TrainState` of every run (parameters, optimizer state, step count, fit
epoch, data-order key), `load_states(root, checkpoints=True)` the states at every kept checkpoint (runs,
checkpoints, ...). `continue_runs` trains states further through the runner, with their optimizer state carried
over (a resumed run: the same bits as the uninterrupted one at the same call width) or restarted fresh (what
the ambiguous-grokking study did after perturbing or transplanting).
"""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.errors import UserError
from grokjax.run import runner, storage
from grokjax.run.results import DivergedRunsWarning, load_sweep, read_npz
from grokjax.run.specs import SweepConfig, read_config
from grokjax.train import TrainState, make_trainer, order_key, seed_keys


def finished_sweep(root, checkpoints: bool = False) -> tuple[dict, SweepConfig, str]:
    """The saved sweep (`load_sweep`), its config and the parameter folder to read (final or checkpoints); one
    sentence for anything but a finished sweep (with checkpoints, if asked)."""
    root = Path(root)
    sweep = load_sweep(root)
    params = "checkpoints" if checkpoints else "params"
    if not (root / params).is_dir():
        hint = " (run the sweep with --keep-every K to save checkpoints)" if checkpoints else ""
        raise UserError(f"No sweep results in {root}: {params}/ is missing{hint}.")
    if checkpoints and "checkpoint_epochs" not in sweep["traces"]:
        raise UserError(f"{root / 'traces.npz'} lacks checkpoint_epochs; were the checkpoints saved by a sweep?")
    cfg = read_config(sweep["config"], str(root / "config.json"))
    if cfg.fraction_grid or "variant" in cfg.grid_axes():
        what = "training fractions" if cfg.fraction_grid else "problems"
        raise UserError(f"{root} sweeps {what}; this analysis reads sweeps of one training set.")
    return sweep, cfg, params


def _template(cfg: SweepConfig) -> TrainState:
    return jax.eval_shape(make_trainer(cfg.data(), cfg).init, jax.random.PRNGKey(0), cfg.hparams())


def load_states(root, cfg: SweepConfig, checkpoints: bool = False, runs=None) -> TrainState:
    """The saved states of every run of the sweep in `root` (config `cfg`), or of `runs` (rows of seeds.npz, read
    from memory-mapped files), run axis first (then checkpoints); a `DivergedRunsWarning` if some of them diverged
    in training."""
    root = Path(root)
    params_dir, opt_dir = ("checkpoints", "checkpoint_opt_state") if checkpoints else ("params", "opt_state")
    template = _template(cfg)
    stateless = not jax.tree.leaves(template.opt_state)  # plain SGD: nothing to save
    if not (root / opt_dir).is_dir() and not stateless:
        raise UserError(f"{root} has no saved optimizer state ({opt_dir}/): it was written before grokjax kept "
                        f"optimizer states{'' if not checkpoints else ', or without --keep-every'}.")
    read = lambda path: {name: np.asarray(x if runs is None else x[runs])
                         for name, x in storage.load_params(path, mmap=runs is not None).items()}
    params = storage.from_named_leaves(template.params, read(root / params_dir))
    opt_state = storage.from_named_leaves(template.opt_state, {} if stateless else read(root / opt_dir))
    n_runs = len(jax.tree.leaves(params)[0])
    runs = np.arange(n_runs) if runs is None else np.asarray(runs)
    per_unit = cfg.schedule.steps_per_unit(cfg.data().n_train)
    traces = read_npz(root / "traces.npz", ("checkpoint_epochs", "checkpoint_fit_epoch") if checkpoints else ())
    if checkpoints:
        n_ckpt = len(traces["checkpoint_epochs"])
        steps = np.broadcast_to(traces["checkpoint_epochs"] * per_unit, (n_runs, n_ckpt)).astype(np.int32)
        fit = traces["checkpoint_fit_epoch"][runs]
    else:
        steps = np.full(n_runs, cfg.schedule.length * per_unit, np.int32)
        fit = read_npz(root / "seeds.npz", ("fit_epoch",))["fit_epoch"][runs].astype(np.int32)
    seeds = read_npz(root / "seeds.npz", ())
    if "diverged" in seeds and seeds["diverged"][runs].any():
        warnings.warn(f"{int(seeds['diverged'][runs].sum())} of {n_runs} runs of {root} diverged during training "
                      f"(non-finite loss or parameters; seeds.npz 'diverged' marks them): their states are not "
                      f"finite, leave them out of analyses.", DivergedRunsWarning, stacklevel=2)
    keys = order_keys(cfg, runs)
    if checkpoints:
        keys = np.repeat(keys[:, None], n_ckpt, axis=1)
    return TrainState(params, opt_state, steps, fit, keys)


def order_keys(cfg: SweepConfig, runs) -> np.ndarray:
    """The data-order keys of the given runs, as `Trainer.init` derives them from the run's init key."""
    keys = seed_keys(cfg.seed, np.asarray(runs) % cfg.n_seeds)
    return np.asarray(jax.vmap(order_key)(keys))


def _is_count(leaf) -> bool:
    """Integer leaves of an optimizer state are step counts (Adam's bias correction, a warmup schedule)."""
    return jnp.issubdtype(leaf.dtype, jnp.integer)


def continue_program(cfg: SweepConfig, n_logs: int, fresh_optimizer: bool):
    """The runner's program: a batch of (state, hparams) trained `n_logs` x log_every more units -> (state, trace).

    The optimizer's step counts and the state's step enter unbatched, one value for the whole call (the runs of
    a call share them): in the sweep they start as constants, which `vmap` leaves unbatched, so the bias
    correction is one scalar for all runs; a batched count compiles to other fusions and changes the last bits
    of every update."""
    trainer = make_trainer(cfg.data(), cfg)

    def one(state: TrainState, counts, epoch, hparams):
        state = state._replace(epoch=epoch)
        if fresh_optimizer:
            state = trainer.start(state.params, state.order_key)._replace(epoch=state.epoch, fit_epoch=state.fit_epoch)
        else:
            leaves, tree = jax.tree.flatten(state.opt_state)
            shared = iter(counts)
            state = state._replace(opt_state=jax.tree.unflatten(tree, [next(shared) if _is_count(x) else x
                                                                       for x in leaves]))
        return trainer.advance(state, hparams, n_logs)

    def batch(states: TrainState, hparams):
        counts = [x[0] for x in jax.tree.leaves(states.opt_state) if _is_count(x)]
        return jax.vmap(one, in_axes=(0, None, None, 0))(states, counts, states.epoch[0], hparams)

    return batch


def continue_runs(cfg: SweepConfig, states: TrainState, hparams: dict, n_logs: int, fresh_optimizer: bool = False,
                  workers: int = 0, cache_dir: str | None = None) -> tuple:
    """Train every state (run axis first) `n_logs` x log_every more schedule units with `hparams` (arrays, one
    value per run): returns the final states and the metric traces (numpy), at `cfg.seeds_per_call` per call."""
    if cfg.seeds_per_call < 1:
        raise UserError("Continuing runs needs the call width they were trained at (the config's seeds_per_call).")
    hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
    shared = [np.asarray(states.epoch)]
    if not fresh_optimizer:
        shared += [np.asarray(x) for x in jax.tree.leaves(states.opt_state) if _is_count(x)]
    if any((c != c.flat[0]).any() for c in shared):
        raise UserError("Runs continued together must share their step and optimizer step counts: continue the states "
                        "of one checkpoint (or the final ones) at a time.")
    program = (continue_program, (cfg, int(n_logs), bool(fresh_optimizer)))
    (state, trace), _ = runner.map_program(program, (jax.tree.map(np.asarray, states), hparams), cfg.seeds_per_call,
                                           workers, cache_dir=cache_dir)
    return state, trace
