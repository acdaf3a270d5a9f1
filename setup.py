"""Packaging beyond pyproject.toml: ``conf/`` ships inside the wheel (and ``py.typed``: the
package is typed, PEP 561).

``conf/`` stays the top-level folder users edit in a checkout; the wheel carries it as the
package ``harness._conf`` (``harness/_conf/`` once installed), which the harness reads when no
checkout's ``conf/`` lies beside it (:func:`harness.config.command.config_dir`). pyproject.toml
cannot map a folder outside ``harness/`` into the package while finding the packages itself.
"""

from setuptools import find_namespace_packages, setup

CONF = ["harness._conf", *(f"harness._conf.{group}" for group in find_namespace_packages("conf"))]

setup(
    packages=[*find_namespace_packages(include=["harness", "harness.*"]), *CONF],
    package_dir={"harness._conf": "conf"},
    package_data={"harness": ["py.typed", "metrics/*/*.py"], **{name: ["*.yaml"] for name in CONF}},
)
