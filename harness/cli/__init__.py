"""The command lines: thin entry points over the packages below them. ``sweep`` (run or resume a
study, or start ``study.workers`` worker processes), ``report``, ``export``, ``predict``."""
