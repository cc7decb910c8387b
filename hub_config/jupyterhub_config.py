"""JupyterHub config file of loopml (``jupyterhub -f``): everything is in :mod:`loopml.hub_config.config`."""

from loopml.hub_config.config import configure

configure(get_config())  # noqa: F821 - JupyterHub provides get_config
