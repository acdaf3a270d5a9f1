"""``python -m harness.storage_proxy``: see :mod:`harness.cli.storage_proxy`."""

import sys

from harness.cli.storage_proxy import main

if __name__ == "__main__":  # imported (a console script, a test): runs nothing
    sys.exit(main())
