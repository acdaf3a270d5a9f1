"""``python -m harness.report``: see :mod:`harness.cli.report`."""

from harness.cli.report import cli

if __name__ == "__main__":  # imported (a console script, a test): runs nothing
    cli()
