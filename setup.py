"""Shim for tools that still call setup.py; all metadata lives in pyproject.toml.

One addition: editable installs (``pip install -e .``, what ``make`` runs) install the
``data-files`` of pyproject.toml too, as wheels do. setuptools' ``editable_wheel`` installs
data only when the distribution answers ``has_data()``, which its Distribution does not
define (it has ``has_data_files()``), so without this the server extension's
``etc/jupyter/jupyter_server_config.d/loopml.json`` would be missing from dev installs.
"""
from setuptools import setup
from setuptools.dist import Distribution


class _Distribution(Distribution):
    def has_data(self) -> bool:
        return self.has_data_files()


setup(distclass=_Distribution)
