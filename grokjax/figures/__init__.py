"""Figures, one module per kind of results, each drawn from saved arrays alone (never jax, never training).

`draw(results_dir)` picks the kind: a training-Jacobian directory, a transplant's, a modular challenge's, a
circuit-efficiency study's, a sharpness study's (concealed parity, the linear teacher), a group-pair atlas, else a sweep (with its
analyses, its error-function fits included).
"""

import contextlib
import sys

from grokjax.figures.atlas import draw_atlas, is_atlas_results
from grokjax.figures.challenge import draw_challenge, is_challenge_results
from grokjax.figures.efficiency import (
    draw_efficiency,
    draw_semigrok,
    draw_ungrok,
    is_efficiency_results,
    is_semigrok_results,
    is_ungrok_results,
)
from grokjax.figures.jacobian import draw_jacobian, is_jacobian_results
from grokjax.figures.llc import llc_correlation_lines
from grokjax.figures.measures import measures_correlation_lines
from grokjax.figures.sharpness import draw_sharpness, draw_sweep_sharpness, is_sharpness_results
from grokjax.figures.sweep import draw_all
from grokjax.figures.transplant import draw_transplant, is_transplant_results
from grokjax.run.results import diverged_warning, load_sweep


def draw(results_dir, out_dir=None) -> tuple[list, list[str]]:
    """Draw every figure of `results_dir`: the paths written and lines worth printing (the LLC's correlations);
    runs that diverged in training are left out of the figures, with a warning on stderr. Into the results directory (the
    default) only with its lock held, as every writer of it (`grokjax.run.outdir.locked`)."""
    from pathlib import Path

    from grokjax.run.outdir import guard, locked

    inside = out_dir is None or Path(out_dir).absolute().is_relative_to(Path(results_dir).absolute())
    lock = locked(results_dir) if inside and Path(results_dir).is_dir() else contextlib.nullcontext()
    with guard(lambda: "the figures written so far are complete: run the same command again"), lock:
        if is_jacobian_results(results_dir):
            return draw_jacobian(results_dir, out_dir), []
        if is_transplant_results(results_dir):
            return draw_transplant(results_dir, out_dir), []
        if is_challenge_results(results_dir):
            return draw_challenge(results_dir, out_dir), []
        if is_efficiency_results(results_dir):
            return draw_efficiency(results_dir, out_dir), []
        if is_ungrok_results(results_dir):
            return draw_ungrok(results_dir, out_dir), []
        if is_semigrok_results(results_dir):
            return draw_semigrok(results_dir, out_dir), []
        if is_sharpness_results(results_dir):
            return draw_sharpness(results_dir, out_dir), []
        if is_atlas_results(results_dir):
            return draw_atlas(results_dir, out_dir), []
        warning = diverged_warning(load_sweep(results_dir), what="the figures leave them out and say so")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        lines = llc_correlation_lines(results_dir) + measures_correlation_lines(results_dir)
        return draw_all(results_dir, out_dir) + draw_sweep_sharpness(results_dir, out_dir), lines
