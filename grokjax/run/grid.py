"""The axes of a sweep's grid and their names in words; free of JAX, so figures can name grid points."""

GRID_AXES = ("variant", "fraction", "lr", "weight_decay", "filter_alpha", "filter_lambda")
"""What a sweep's grid may vary, in grid order: the problem (a problem whose `n_variants` is not None, e.g. pairs
of groups), the problem's training fraction (`SweepConfig.fraction_grid`), then optimizer hyperparameters
(`<axis>_grid`)."""
GRID_FIELDS = GRID_AXES[1:]
"""The axes given as a `SweepConfig` field `<axis>_grid` (and a command-line option of several values)."""
MANY_POINTS = 6
"""Beyond this many grid points, outcomes are printed as one table with a row per grid point, and drawn as one line
per outcome across the grid points."""


def grid_label(point: dict) -> str:
    """A grid point's hyperparameters in words, e.g. 'lr 0.001, weight decay 1' (keys of `SweepConfig.grid`), after
    its problem's name if it has one ('variant_name')."""
    words = [f"{k.replace('_', ' ')} {point[k]:g}" for k in GRID_AXES if k in point and k != "variant"]
    return ", ".join(([point["variant_name"]] if "variant_name" in point else []) + words)


def point_labels(points: list[dict]) -> list[str]:
    """Each grid point in words (`grid_label`), naming only the axes whose values differ between points."""
    varying = {k for k in points[0] if k in GRID_AXES + ("variant_name",) and len({p[k] for p in points}) > 1}
    return [grid_label({k: v for k, v in p.items() if k in varying}) for p in points]
