"""The config of a sweep: problem x model x optimizer x schedule, and the runs (seeds x grid) to train.

Saved in config.json as a nested, tagged, versioned spec:

    {"schema": 2, "sweep": {"problem": {"kind": "groups", ...}, "model": {"kind": "mlp2", ...},
     "optimizer": {...}, "schedule": {...}, "seed": 0, "n_seeds": ..., ...}, "task": ..., "environment": ...}

`read_config` reads it back exactly; configs of schema 1 (the flat sweep config with a `train` entry, written
before problems and models were separate) are converted, and any other schema is refused with one sentence.
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import jax.numpy as jnp

from grokjax.analysis.outcomes import CI_METHODS
from grokjax.errors import UserError
from grokjax.losses import LOSSES
from grokjax.models import MODELS, MLP2Spec
from grokjax.optim import OptimizerSpec
from grokjax.problems import PROBLEMS, GroupsProblem
from grokjax.problems.nested import nested_data
from grokjax.run.grid import GRID_AXES
from grokjax.specs import Spec, from_registry
from grokjax.train import Schedule

SCHEMA = 2
PRECISIONS = ("default", "high", "highest")


def n_variants(problem) -> int | None:
    """The number of problems a problem spec sweeps as the grid axis "variant" (its `n_variants`: pairs of groups,
    parity over several numbers of bits), or None for one problem. Such a spec also says whether its variants
    train on different subsets of the points (`variant_subsets`; then only full batch)."""
    return getattr(problem, "n_variants", None)


@dataclass(frozen=True)
class SweepConfig(Spec):
    """Everything that determines a sweep's numbers; saved in config.json and compared on resume.

    Defaults are the published run: S(4) vs A(4) x Z(2), MLP2 with D = H = 32, Adam with L2 weight decay 2e-5,
    3000 full-batch epochs. A run is a (grid point, seed) pair: run r is seed r % n_seeds at grid point
    r // n_seeds of the problem's variants x training fractions x learning rates x weight decays x Grokfast alphas
    x Grokfast lambdas (`GRID_AXES`, the first varying slowest); an empty grid is the problem's or optimizer's own
    value. The whole grid is one compiled program; over training fractions, every run trains full batch on its own
    nested subset of one pool of points (`grokjax.problems.nested`); over variants (a problem whose `n_variants`
    is not None: pairs of groups of one order, parity over several numbers of bits), on its variant's subset,
    labels and inputs (`grokjax.problems.base.Variants`).
    """

    problem: Spec = field(default_factory=GroupsProblem)
    model: Spec = field(default_factory=MLP2Spec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: Schedule = field(default_factory=Schedule)
    seed: int = 0
    n_seeds: int = 10000
    grok_threshold: float = 0.999
    ci_method: str = "wilson"
    seeds_per_call: int = 0  # 0: chosen for the device by the runner
    lr_grid: tuple[float, ...] = ()  # learning rates swept together with the seeds (empty: optimizer.lr)
    fraction_grid: tuple[float, ...] = ()  # training fractions swept likewise, nested (empty: problem.fraction)
    weight_decay_grid: tuple[float, ...] = ()  # weight decays swept likewise (empty: optimizer.weight_decay)
    filter_alpha_grid: tuple[float, ...] = ()  # Grokfast-EMA alphas swept likewise (empty: optimizer.filter_alpha)
    filter_lambda_grid: tuple[float, ...] = ()  # Grokfast lambdas swept likewise (empty: optimizer.filter_lambda)
    matmul_precision: str = "highest"
    loss: str = "cross_entropy"  # the training loss, one of grokjax.losses.LOSSES ("stablemax64" needs jax x64)

    def __post_init__(self):
        if self.n_seeds < 1:
            raise UserError(f"The number of seeds must be a positive integer, got {self.n_seeds}.")
        if self.n_seeds >= 2**32:
            raise UserError(f"At most 2**32 - 1 seeds are supported, got {self.n_seeds}.")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"The seed must be an integer in [0, 2**32), got {self.seed}.")
        if not 0 < self.grok_threshold <= 1:
            raise UserError(f"The grokking threshold must be in (0, 1], got {self.grok_threshold}.")
        if self.ci_method not in CI_METHODS:
            raise UserError(f"Unknown interval method '{self.ci_method}'; expected one of {', '.join(CI_METHODS)}.")
        if self.seeds_per_call < 0:
            raise UserError(f"Seeds per call must be a positive integer, got {self.seeds_per_call}.")
        if self.loss not in LOSSES:
            raise UserError(f"Unknown loss '{self.loss}'; expected one of {', '.join(LOSSES)}.")
        if self.matmul_precision not in PRECISIONS:
            raise UserError(f"Unknown matmul precision '{self.matmul_precision}'; expected one of {', '.join(PRECISIONS)}.")
        filter_grids = [a for a in ("filter_alpha", "filter_lambda") if getattr(self, f"{a}_grid")]
        if filter_grids and self.optimizer.filter == "none":
            raise UserError("A grid of Grokfast alphas or lambdas needs a gradient filter (--filter ema or ma).")
        if self.filter_alpha_grid and self.optimizer.filter != "ema":
            raise UserError("Only the EMA filter has an alpha to sweep.")
        if self.fraction_grid:
            if not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in self.fraction_grid):
                raise UserError(f"Training fractions must lie in (0, 1], got {list(self.fraction_grid)}.")
            if self.schedule.batch_size:
                raise UserError("A sweep over training fractions trains full batch: leave out the batch size.")
        if self.fraction_grid and n_variants(self.problem):
            raise UserError("A sweep cannot vary both the training fraction and the problem.")
        if self.schedule.batch_size and n_variants(self.problem) and getattr(self.problem, "variant_subsets", True):
            raise UserError("A sweep over problems that train on different points trains full batch: leave out the "
                            "batch size.")
        grid = self.grid()
        for g in range(self.n_grid):
            optimizer = {k: v[g] for k, v in grid.items() if k not in ("variant", "fraction")}
            dataclasses.replace(self.optimizer, **optimizer)  # validates every grid value
        if self.n_runs >= 2**31:
            raise UserError(f"At most 2**31 - 1 runs (grid points x seeds) are supported, got {self.n_runs}.")

    def grid_axes(self) -> list[str]:
        """The `GRID_AXES` of this config, the keys of its `hparams` (named without making arrays, so a config can
        be built before JAX starts)."""
        names = set(self.optimizer.hparam_names()) | ({"fraction"} if self.fraction_grid else set())
        names |= {"variant"} if n_variants(self.problem) else set()
        return [name for name in GRID_AXES if name in names]

    def axis_values(self, name: str) -> tuple:
        """The values of grid axis `name`: the problem's variants 0..n-1, or the axis's grid, or (an optimizer
        axis without a grid) the optimizer's own value; "fraction" is an axis only with its grid."""
        if name == "variant":
            return tuple(range(self.problem.n_variants))
        return getattr(self, f"{name}_grid") or (getattr(self.optimizer, name),)

    def grid(self) -> dict[str, list[float]]:
        """Every grid axis's value at every grid point, the first axis varying slowest."""
        points = list(itertools.product(*(self.axis_values(name) for name in self.grid_axes())))
        return {name: [p[i] for p in points] for i, name in enumerate(self.grid_axes())}

    @property
    def n_grid(self) -> int:
        return math.prod(len(self.axis_values(name)) for name in self.grid_axes())

    @property
    def n_runs(self) -> int:
        """Grid points x seeds; run r is seed r % n_seeds at grid point r // n_seeds."""
        return self.n_grid * self.n_seeds

    def data(self):
        """The problem's `Data` (nested over the `fraction_grid`, if any): what every run of the sweep sees."""
        return nested_data(self.problem, self.fraction_grid) if self.fraction_grid else self.problem.build()

    def hparams(self) -> dict:
        """The hyperparameters that reach the program as arrays (float32): the optimizer's at its own values, and
        with a `fraction_grid` the training fraction (its first), with variants the variant (0)."""
        fraction = {"fraction": jnp.float32(self.fraction_grid[0])} if self.fraction_grid else {}
        variant = {"variant": jnp.float32(0)} if "variant" in self.grid_axes() else {}
        return {**self.optimizer.hparams(), **fraction, **variant}

    @classmethod
    def from_dict(cls, d: dict, what: str = "sweep config") -> "SweepConfig":
        if not isinstance(d, dict):
            raise UserError(f"The {what} is not a JSON object.")
        d = dict(d)
        problem = from_registry(PROBLEMS, d.pop("problem", None), "problem")
        model = from_registry(MODELS, d.pop("model", None), "model")
        rest = super().from_dict(d, what)
        return dataclasses.replace(rest, problem=problem, model=model)


def config_json(cfg: SweepConfig, task_summary: dict, environment: dict) -> dict:
    """The contents of a sweep's config.json."""
    return {"schema": SCHEMA, "sweep": cfg.to_dict(), "task": task_summary, "environment": environment}


def _from_schema_1(old: dict) -> dict:
    """A schema-1 sweep config (flat task fields and a `train` entry) as a schema-2 one; same numbers."""
    old = dict(old)
    train = dict(old.pop("train"))
    problem = {"kind": "groups", **{k: old.pop(k) for k in ("groups", "task", "fraction", "group_fractions",
                                                               "iid_group", "data_seed") if k in old}}
    model = {"kind": "mlp2", **{k: train.pop(k) for k in ("embed_dim", "hidden_dim", "unembed_bias") if k in train}}
    optimizer = {"kind": train.pop("optimizer", "adam"),
                 **{k: train.pop(k) for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum") if k in train}}
    schedule = {k: train.pop(k) for k in ("log_every", "keep_every") if k in train}
    if "epochs" in train:
        schedule["length"] = train.pop("epochs")
    if "matmul_precision" in train:
        old["matmul_precision"] = train.pop("matmul_precision")
    if train:
        raise UserError(f"The schema-1 config has unknown training fields: {', '.join(sorted(train))}.")
    return {"problem": problem, "model": model, "optimizer": optimizer, "schedule": schedule, **old}


def read_config(saved: dict, where: str = "config.json") -> SweepConfig:
    """The SweepConfig of a parsed config.json (schema 2, or schema 1 converted); else one clear UserError."""
    if not isinstance(saved, dict) or not isinstance(saved.get("sweep"), dict):
        raise UserError(f"{where} holds no grokjax sweep config.")
    schema = saved.get("schema", 1)
    if schema not in (1, SCHEMA):
        raise UserError(f"{where} has config schema {schema!r}; this version of grokjax reads schemas 1 and {SCHEMA}.")
    sweep = saved["sweep"] if schema == SCHEMA else _from_schema_1(saved["sweep"]) if "train" in saved["sweep"] else None
    if sweep is None:
        raise UserError(f"{where} says schema 1 but has no training config.")
    try:
        return SweepConfig.from_dict(sweep)
    except (TypeError, KeyError, ValueError) as e:
        raise UserError(f"{where} is not a sweep config this version can read (schema {schema}): {e}.") from None
