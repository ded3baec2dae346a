"""Problems: task families that build a `Data` from a spec; `PROBLEMS` maps each spec's `kind` to its class."""

from grokjax.problems.base import Data
from grokjax.problems.group_pairs import GroupPairsProblem
from grokjax.problems.group_tasks import GroupsProblem
from grokjax.problems.modular import ModularProblem
from grokjax.problems.parity import ConcealedParityProblem

PROBLEMS = {cls.kind: cls for cls in (GroupsProblem, GroupPairsProblem, ModularProblem, ConcealedParityProblem)}

__all__ = ["ConcealedParityProblem", "Data", "GroupPairsProblem", "GroupsProblem", "ModularProblem", "PROBLEMS"]
