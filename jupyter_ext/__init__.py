"""Jupyter server extension, magics and widgets (arrives with the notebook issue)."""
