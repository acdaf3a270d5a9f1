"""The config: Hydra's composition of ``conf/``, the typed schemas of the harness's own settings,
the OmegaConf resolvers ``conf/`` uses, and the Hydra entry-point wrapper every command shares.

Importing this package registers the schemas and the resolvers (before any composition).
"""

from harness.config import resolvers as _resolvers  # noqa: F401  (registers the resolvers)
from harness.config.access import check_sections, settings, train_options
from harness.config.schema import register as _register_schemas

_register_schemas()

__all__ = ["check_sections", "settings", "train_options"]
