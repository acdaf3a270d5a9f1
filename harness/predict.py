"""``python -m harness.predict``: see :mod:`harness.cli.predict`; ``predict()`` is
:func:`harness.export.predict.predict`; ``load_classifier(folder)`` loads an export, a
checkpoint or an ensemble folder as ``(model, tokenizer)``."""

import sys

from harness.cli.predict import main
from harness.export.predict import Prediction, predict
from harness.train.ensemble import load_classifier

__all__ = ["Prediction", "load_classifier", "main", "predict"]

if __name__ == "__main__":
    sys.exit(main())
