"""``python -m harness.export``: see :mod:`harness.cli.export`."""

from harness.cli.export import cli

if __name__ == "__main__":  # imported (a console script, a test): runs nothing
    cli()
