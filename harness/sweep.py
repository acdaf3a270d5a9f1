"""``python -m harness.sweep``: see :mod:`harness.cli.sweep`."""

from harness.cli.sweep import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
