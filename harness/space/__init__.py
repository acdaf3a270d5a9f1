"""Search spaces as data: dotted config paths mapped to distributions (``search_space``), and a
methods study's conditional space (``method_space``); parameter sets checked against a space
(``fit_params``, for trials queued before the sampler's own)."""

from harness.space._fit import fit_params
from harness.space._methods import MethodSpace
from harness.space._params import FIXED_PER_STUDY, Param, SearchSpace

__all__ = ["FIXED_PER_STUDY", "MethodSpace", "Param", "SearchSpace", "fit_params"]
