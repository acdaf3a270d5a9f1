"""``python -m harness.predict``: see :mod:`harness.cli.predict`; ``predict()`` is
:func:`harness.export.predict.predict`."""

import sys

from harness.cli.predict import main
from harness.export.predict import Prediction, predict

__all__ = ["Prediction", "main", "predict"]

if __name__ == "__main__":
    sys.exit(main())
