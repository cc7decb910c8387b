# The PYTHONSTARTUP file the loopml server extension gives its kernels (see extension.py).
#
# IPython runs it in the user's namespace, and a plain `python` REPL in a terminal runs it
# too: so no docstring (it would become the namespace's __doc__), only _loopml_* names,
# removed again, and any failure is logged, never raised into the kernel's start.
# First it runs the PYTHONSTARTUP that was set before the extension took the variable over,
# in the same namespace, as Python would have.

import os as _loopml_os

_loopml_chained = _loopml_os.environ.get("LOOPML_CHAINED_PYTHONSTARTUP")
if _loopml_chained and _loopml_os.path.isfile(_loopml_chained) and _loopml_chained != globals().get("__file__"):
    with open(_loopml_chained, encoding="utf-8") as _loopml_handle:
        exec(compile(_loopml_handle.read(), _loopml_chained, "exec"))


def _loopml_load_magics() -> None:
    import logging

    try:
        from IPython import get_ipython
    except ImportError:  # a plain Python REPL
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "register_magics"):
        return
    try:
        from loopml.jupyter_ext.magics import load_ipython_extension

        load_ipython_extension(shell)
    except Exception:  # the kernel must start even if loopml is broken in it
        logging.getLogger("loopml.jupyter_ext").warning("could not load the %loopml magics", exc_info=True)


_loopml_load_magics()
del _loopml_load_magics, _loopml_chained, _loopml_os
globals().pop("_loopml_handle", None)
