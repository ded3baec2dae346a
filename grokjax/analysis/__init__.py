"""Analyses of trained runs, pure functions batched through the runner: outcomes, LLC, training Jacobian."""
