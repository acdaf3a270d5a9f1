"""Search spaces as data: dotted config paths mapped to distributions (``search_space``), and a
methods study's conditional space (``method_space``)."""

from harness.space._methods import MethodSpace
from harness.space._params import FIXED_PER_STUDY, Param, SearchSpace

__all__ = ["FIXED_PER_STUDY", "MethodSpace", "Param", "SearchSpace"]
