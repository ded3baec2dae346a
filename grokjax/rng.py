"""JAX's threefry hash in straight-line code on CPU too: the same bits, without a loop per draw.

Every `jax.random` draw (and `fold_in`) runs the threefry-2x32 hash. JAX lowers it to straight-line code on
every platform except CPU, where it rolls its 20 rounds into a 5-iteration loop to compile faster. Inside our
scans that costs a loop per draw: in the LLC's SGLD step (4,376 normals per MLP2 chain step) the rolled hash
takes 87.7 µs per chain step against 83.5 µs straight (one pinned core, 8 chains per call). The arithmetic is
the same, so the numbers are the same bit for bit (tested), and programs even compile faster (the default
sweep's 2.0 s against 2.8 s, the LLC's 2.8 against 3.2).
`use_straight_threefry()` registers JAX's own straight-line lowering for CPU, once per process; where a JAX
version no longer has it, the draws keep the rolled loop (slower, same numbers).
"""

from jax.extend.random import threefry2x32_p
from jax.interpreters import mlir


def use_straight_threefry() -> bool:
    """Lower threefry on CPU as JAX does elsewhere (idempotent); True if the straight-line lowering is in place."""
    from jax._src.random import threefry2x32  # JAX's lowering rules are not public; see the module docstring

    rule = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    if rule is None:
        return False
    mlir.register_lowering(threefry2x32_p, rule, platform="cpu")
    return True

