"""``python -m harness.report``: see :mod:`harness.cli.report`."""

from harness.cli.report import cli

cli()
