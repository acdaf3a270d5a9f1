"""``python -m harness.export``: see :mod:`harness.cli.export`."""

from harness.cli.export import cli

cli()
