"""What every command-line entry point shares: the options that describe a run, and errors as one sentence.

`add_config_options` adds the problem, model, optimizer and schedule options of a `SweepConfig` to a parser
(every script that trains takes the same ones, `--model` included); `config_from_args` builds the config and
`config_options` turns a saved config back into option defaults (for `--resume`); `add_run_options` adds how a
job runs (workers, overwrite, progress, figures). A UserError prints its message and exits 2; Ctrl-C exits 130.
"""

import argparse
import signal
import sys

from grokjax.errors import Interrupted, UserError


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (`kill PID`) is handled like Ctrl-C: temporary files removed, one sentence


def run_cli(main, interrupted: str = "Interrupted.") -> None:
    """Run `main()`; a UserError prints its message and exits 2, Ctrl-C (or SIGTERM) prints the message of the
    `Interrupted` raised (what was kept, how to continue), else `interrupted`, and exits 130."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(e.message if isinstance(e, Interrupted) else interrupted, file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def add_run_options(p, overwrite: str | None, workers: int | None = 0, figures: bool = False,
                    compile_cache: bool = False, progress: bool = True) -> None:
    """The options of how a job runs, the same in every script: `--workers` (default `workers`; 0 is one per core;
    None: no such option), `--overwrite` (its help says what it replaces; None: no such option), `--no-progress`
    (unless `progress` is False: the job shows none), and if asked `--no-figures` and `--no-compile-cache`. `p` is
    a parser or an argument group."""
    if workers is not None:
        default = "one per core; 1: in this process" if workers == 0 else f"{workers}; 0: one per core"
        p.add_argument("--workers", type=int, default=workers,
                       help=f"on a one-device CPU, worker processes each pinned to a core and running whole calls; "
                            f"the numbers do not change (default: {default})")
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help=overwrite)
    if figures:
        p.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if compile_cache:
        p.add_argument("--no-compile-cache", action="store_true", help="do not keep compiled programs between runs")


def draw_figures(results_dir) -> None:
    """Draw every figure of `results_dir` (`grokjax.figures.draw`) and print their paths: the last step of a study's
    script."""
    from grokjax.figures import draw

    paths, _ = draw(results_dir)
    print("\n".join(map(str, paths)))


PRESETS = {
    "s4": {},
    "s5": {"groups": ["S(5)", "times(A(5),Z(2))"], "embed_dim": 128, "hidden_dim": 128},
    "z48": {"groups": ["Z(48,2)", "twZ(48)"], "model": "mlp3", "embed_dim": 32, "hidden_dim": 64,
            "weight_decay": [2e-4], "epochs": 2000},
}
"""The ambiguous-grokking study's published sweeps, as option defaults: s4 (the defaults: S4 vs A4xZ2, MLP2,
D = H = 32), s5 (S5 vs A5xZ2, D = H = 128, its second experiment), z48 (Z48xZ2 vs twZ48 with the authors' MLP3
defaults: embed 32, hidden 64, weight decay 2e-4, 2000 epochs). Options given on the command line win."""


def apply_preset(p: argparse.ArgumentParser, argv) -> None:
    """Make the `--preset` named in `argv` (if any) the defaults of `p`'s options; `p` must have `--preset`."""
    name = p.parse_known_args(argv)[0].preset
    if name:
        p.set_defaults(**PRESETS[name])


def add_config_options(p: argparse.ArgumentParser, grid: bool = True, weight_decay: float | None = None,
                       schedule: bool = True, problem: bool = True) -> None:
    """The options of a run: problem (groups or modular), model, optimizer (and accelerators, loss), schedule. With
    `grid`, --lr, --weight-decay, --filter-alpha and --filter-lambda take several values (a grid swept with the
    seeds, `grid_options`); `weight_decay` overrides the optimizer's default; without
    `schedule` the script sets the schedule itself (no --epochs, --batch-size, ...), without `problem` the
    problem (no --groups, --p, ...; `config_from_args` is then given it)."""
    from grokjax.optim import OptimizerSpec
    from grokjax.problems.group_tasks import GroupsProblem
    from grokjax.problems.modular import ModularProblem
    from grokjax.train import Schedule

    d, o, s, mod = GroupsProblem(), OptimizerSpec(), Schedule(), ModularProblem()
    wd = o.weight_decay if weight_decay is None else weight_decay
    many = dict(nargs="+", type=float) if grid else dict(type=float)
    if problem:
        _add_problem_options(p, d, mod, many, grid)
    _add_training_options(p, o, s, wd, many, grid, schedule)


def _add_problem_options(p, d, mod, many, grid: bool) -> None:
    from grokjax.problems.group_tasks import TASK_KINDS
    from grokjax.problems.modular import SPLITS

    g = p.add_argument_group("problem")
    g.add_argument("--problem", choices=("groups", "modular"), default="groups",
                   help="groups: tables of groups on shared labels (the options below); modular: x o y mod p "
                        "(--p, --op, --split, --fraction, --data-seed) (default: %(default)s)")
    g.add_argument("--p", type=int, default=mod.p, help="modular: the modulus (default: %(default)s)")
    g.add_argument("--op", default=mod.op, help="modular: + - * / or a polynomial in x and y, e.g. 'x**3 + x*y**2 + y' "
                                                "(default: %(default)s)")
    g.add_argument("--split", choices=SPLITS, default=mod.split,
                   help="modular: random (a --fraction drawn with --data-seed) or thread (the grokking challenge "
                        "generator's split) (default: %(default)s)")
    g.add_argument("--label-seed", type=int, default=mod.label_seed,
                   help="random labels: permute the table's labels with this seed (modular; for groups, the "
                        "first group's table labels the training pairs) (default: -1, the true labels)")
    g = p.add_argument_group("problem: groups on shared labels")
    g.add_argument("--groups", nargs="+", default=list(d.groups), metavar="SPEC",
                   help="group specs on shared labels, e.g. 'S(4)' 'times(A(4),Z(2))' (default: %(default)s)")
    g.add_argument("--task", choices=TASK_KINDS, default=d.task, help="training set (default: %(default)s)")
    g.add_argument("--fraction", default=None, metavar="F", **many,
                   help="fraction of the intersection (intersection_fraction) or of a table (iid), or of the modular "
                        "table trained on" + ("; several values sweep nested training sets, full batch, crossed with "
                                              "the other grids" if grid else "") +
                        f" (default: {d.fraction:g} for groups, {mod.fraction:g} for modular)")
    g.add_argument("--group-fractions", type=float, nargs="+", default=list(d.group_fractions), metavar="F",
                   help="intersection_plus: fraction of each group's own pairs added, one per group")
    g.add_argument("--iid-group", type=int, default=d.iid_group, help="iid: index of the group whose table is sampled")
    g.add_argument("--data-seed", type=int, default=d.data_seed, help="seed of the training-set sampling (default: %(default)s)")


def _add_training_options(p, o, s, wd, many, grid: bool, schedule: bool) -> None:
    from grokjax.losses import LOSSES
    from grokjax.models import MODELS
    from grokjax.optim import FILTERS, OPTIMIZERS
    from grokjax.run.specs import PRECISIONS, SweepConfig

    g = p.add_argument_group("model")
    g.add_argument("--model", choices=tuple(MODELS), default="mlp2",
                   help="mlp2 (Chughtai et al., the published runs), mlp3 (the study code's default: embeddings "
                        "summed, one layer), linear (default: %(default)s)")
    g.add_argument("--embed-dim", type=int, default=None, help="D (default: the model's, 32)")
    g.add_argument("--hidden-dim", type=int, default=None, help="H (default: the model's, mlp2 32, mlp3 64)")
    g.add_argument("--no-unembed-bias", action="store_true", help="drop the output bias")
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=o.kind, help="(default: %(default)s)")
    g.add_argument("--lr", default=[o.lr] if grid else o.lr, metavar="LR", **many,
                   help="learning rate" + ("; several values sweep a grid with every seed" if grid else "") +
                        " (default: %(default)s)")
    g.add_argument("--beta1", type=float, default=o.beta1, help="Adam beta1 (default: %(default)s)")
    g.add_argument("--beta2", type=float, default=o.beta2, help="Adam beta2 (default: %(default)s)")
    g.add_argument("--eps", type=float, default=o.eps, help="Adam epsilon (default: %(default)s)")
    g.add_argument("--weight-decay", default=[wd] if grid else wd, metavar="WD", **many,
                   help="L2 on weights for adam/sgd, decoupled for adamw" +
                        ("; several values sweep a grid, crossed with the learning rates" if grid else "") +
                        " (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=o.momentum, help="SGD momentum (default: %(default)s)")
    g.add_argument("--filter", choices=FILTERS, default=o.filter,
                   help="Grokfast gradient filter in front of the optimizer (default: %(default)s)")
    crossed = "; several values sweep a grid, crossed with the others" if grid else ""
    g.add_argument("--filter-alpha", default=[o.filter_alpha] if grid else o.filter_alpha, metavar="ALPHA", **many,
                   help=f"Grokfast-EMA alpha{crossed} (default: %(default)s)")
    g.add_argument("--filter-lambda", default=[o.filter_lambda] if grid else o.filter_lambda, metavar="LAMBDA",
                   **many, help=f"Grokfast lambda{crossed} (default: %(default)s)")
    g.add_argument("--filter-window", type=int, default=o.filter_window,
                   help="Grokfast-MA window (default: %(default)s)")
    g.add_argument("--ortho", action="store_true", help="the orthogonal gradient (⊥Grad) in front of the optimizer")
    g.add_argument("--loss", choices=tuple(LOSSES), default=SweepConfig.loss,
                   help="training loss; stablemax64 needs JAX_ENABLE_X64=1 (default: %(default)s)")
    g.add_argument("--matmul-precision", choices=PRECISIONS, default=SweepConfig.matmul_precision,
                   help="(default: %(default)s)")
    if not schedule:
        return
    g = p.add_argument_group("schedule")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=s.length, help="epochs to train (default: %(default)s)")
    length.add_argument("--steps", type=int, default=None,
                        help="optimizer steps to train instead (needs --batch-size; --log-every and --keep-every "
                             "then count steps)")
    g.add_argument("--batch-size", type=int, default=s.batch_size,
                   help="minibatch size, a fresh permutation every epoch (default: 0, full batch)")
    g.add_argument("--warmup-steps", type=int, default=s.warmup_steps,
                   help="linear learning-rate warmup over this many optimizer steps (default: %(default)s)")
    g.add_argument("--log-every", type=int, default=s.log_every, help="epochs (or steps) between metrics (default: %(default)s)")
    g.add_argument("--keep-every", type=int, default=s.keep_every,
                   help="also save every run's parameters and optimizer state every this many epochs (or steps), "
                        "for analyses over training time (default: only the final ones)")


def model_from_args(spec_cls, a):
    """The model spec of --model with the --embed-dim/--hidden-dim it has and its output bias unless
    --no-unembed-bias; a size or bias option the model does not have is one sentence."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(spec_cls)}
    given = {k: v for k, v in (("embed_dim", a.embed_dim), ("hidden_dim", a.hidden_dim)) if v is not None}
    missing = [k.replace("_", "-") for k in given if k not in fields]
    if missing:
        raise UserError(f"The {spec_cls.kind} model has no --{' or --'.join(missing)} option.")
    bias = next((k for k in ("unembed_bias", "bias") if k in fields), None)
    if bias:
        given[bias] = not a.no_unembed_bias
    elif a.no_unembed_bias:
        raise UserError(f"The {spec_cls.kind} model has no output bias to drop.")
    return spec_cls(**given)


def config_from_args(a, schedule=None, problem=None, **run):
    """The SweepConfig of parsed `add_config_options` options; `schedule` and `problem` replace the schedule and
    problem options (for a script without them), `run` gives the run fields (seeds, grid, ...)."""
    from grokjax.models import MODELS
    from grokjax.optim import OptimizerSpec
    from grokjax.run.specs import SweepConfig
    from grokjax.train import Schedule

    first = lambda v: v[0] if isinstance(v, list) else v
    lr, wd, alpha, lam = first(a.lr), first(a.weight_decay), first(a.filter_alpha), first(a.filter_lambda)
    model = model_from_args(MODELS[a.model], a)
    if schedule is None:
        steps = a.steps is not None
        schedule = Schedule(a.steps if steps else a.epochs, a.log_every, a.keep_every, a.batch_size,
                            "steps" if steps else "epochs", a.warmup_steps)
    if problem is None:
        problem = _problem_from_args(a, first(a.fraction))
    optimizer = OptimizerSpec(a.optimizer, lr, a.beta1, a.beta2, a.eps, wd, a.momentum, a.filter, alpha, lam,
                              a.filter_window, a.ortho)
    return SweepConfig(problem=problem, model=model, optimizer=optimizer, schedule=schedule,
                       matmul_precision=a.matmul_precision, loss=a.loss, **run)


def _problem_from_args(a, given):
    """The group or modular problem of the `add_config_options` problem options; `given` is the first --fraction."""
    from grokjax.problems.group_tasks import GroupsProblem
    from grokjax.problems.modular import ModularProblem

    if a.problem == "modular":
        fraction = ModularProblem.fraction if given is None else given
        return ModularProblem(a.p, a.op, fraction, a.split, a.data_seed, a.label_seed)
    fraction = GroupsProblem.fraction if given is None else given
    return GroupsProblem(tuple(a.groups), a.task, fraction, tuple(a.group_fractions), a.iid_group, a.data_seed,
                         a.label_seed)


def grid_options(a) -> dict:
    """The SweepConfig grid fields of parsed grid options: an option given several values is a grid axis."""
    from grokjax.run.grid import GRID_FIELDS

    return {f"{name}_grid": tuple(getattr(a, name)) for name in GRID_FIELDS if len(getattr(a, name) or ()) > 1}


def config_options(c) -> dict:
    """The `add_config_options` option values (as argparse defaults) that rebuild the config `c`."""
    if c.problem.kind not in ("groups", "modular"):
        raise UserError(f"This script's options describe group and modular problems, and the sweep is of a "
                        f"{c.problem.kind!r} problem: resume it from Python with "
                        f"run_sweep(read_sweep_config(DIR), DIR, resume=True).")
    p, m, o, s = c.problem, c.model, c.optimizer, c.schedule
    steps = s.unit == "steps"
    if p.kind == "modular":
        problem = dict(problem="modular", p=p.p, op=p.op, split=p.split, label_seed=p.label_seed)
    else:
        problem = dict(problem="groups", groups=list(p.groups), task=p.task, group_fractions=list(p.group_fractions),
                       label_seed=p.label_seed,
                       iid_group=p.iid_group)
    return dict(
        **problem, fraction=list(c.fraction_grid or [p.fraction]), data_seed=p.data_seed, model=m.kind, embed_dim=getattr(m, "embed_dim", None),
        hidden_dim=getattr(m, "hidden_dim", None), no_unembed_bias=not getattr(m, "unembed_bias", getattr(m, "bias", True)),
        optimizer=o.kind, lr=list(c.lr_grid or [o.lr]), beta1=o.beta1, beta2=o.beta2, eps=o.eps,
        weight_decay=list(c.weight_decay_grid or [o.weight_decay]), momentum=o.momentum, filter=o.filter,
        filter_alpha=list(c.filter_alpha_grid or [o.filter_alpha]),
        filter_lambda=list(c.filter_lambda_grid or [o.filter_lambda]), filter_window=o.filter_window, ortho=o.ortho,
        loss=c.loss,
        epochs=None if steps else s.length, steps=s.length if steps else None, batch_size=s.batch_size,
        warmup_steps=s.warmup_steps, log_every=s.log_every, keep_every=s.keep_every,
        matmul_precision=c.matmul_precision)
