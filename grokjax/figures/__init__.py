"""Figures, one module per kind of results, each drawn from saved arrays alone (never jax, never training).

`draw(results_dir)` picks the kind: a training-Jacobian directory, else a sweep (with its LLC estimates).
"""

from grokjax.figures.jacobian import draw_jacobian, is_jacobian_results
from grokjax.figures.llc import llc_correlation_lines
from grokjax.figures.sweep import draw_all


def draw(results_dir, out_dir=None) -> tuple[list, list[str]]:
    """Draw every figure of `results_dir`: the paths written and lines worth printing (the LLC's correlations)."""
    if is_jacobian_results(results_dir):
        return draw_jacobian(results_dir, out_dir), []
    return draw_all(results_dir, out_dir), llc_correlation_lines(results_dir)
