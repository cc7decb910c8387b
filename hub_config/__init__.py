"""JupyterHub configuration, authenticator, spawner and admin panel (arrives with the hub issue)."""
