"""The axes of a sweep's grid and their names in words; free of JAX, so figures can name grid points."""

GRID_AXES = ("fraction", "lr", "weight_decay", "filter_alpha", "filter_lambda")
"""What a sweep's grid may vary (`SweepConfig` field `<axis>_grid`), in grid order: the problem's training
fraction, then optimizer hyperparameters."""


def grid_label(point: dict) -> str:
    """A grid point's hyperparameters in words, e.g. 'lr 0.001, weight decay 1' (keys of `SweepConfig.grid`)."""
    return ", ".join(f"{k.replace('_', ' ')} {point[k]:g}" for k in GRID_AXES if k in point)
