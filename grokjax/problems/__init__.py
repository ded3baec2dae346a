"""Problems: task families that build a `Data` from a spec; `PROBLEMS` maps each spec's `kind` to its class."""

from grokjax.problems.base import Data
from grokjax.problems.group_tasks import GroupsProblem

PROBLEMS = {cls.kind: cls for cls in (GroupsProblem,)}

__all__ = ["Data", "GroupsProblem", "PROBLEMS"]
