"""``ray start`` for a worker node that joins a loopback-only head:
``python -m loopml.launcher.ray_start <ray start arguments>``.

:mod:`loopml.launcher` runs every Ray node it starts with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that Ray keeps ``127.0.0.1`` as the node's
address instead of replacing it with the machine's network address. That one constant
(``ray._private.ray_constants.ENABLE_RAY_CLUSTER``) also makes ``ray start --address``
refuse to start a worker node ("Multi-node Ray clusters are not supported on Windows and
OSX"). Here ``ray start``'s own module sees a copy of the constants with clusters enabled,
so that check passes, while Ray's address resolution (``ray._private.services``) and every
process the node starts still read the environment and keep the loopback address.
``tests/unit/test_launcher.py`` checks that Ray still reads the constant the way this assumes.
"""

from __future__ import annotations

import sys
import types


def main() -> None:
    """Run ``ray start`` with the arguments given, worker-node check passing."""
    from ray.scripts import scripts

    constants = types.ModuleType(scripts.ray_constants.__name__)
    constants.__dict__.update(vars(scripts.ray_constants))
    constants.ENABLE_RAY_CLUSTER = True
    scripts.ray_constants = constants
    sys.argv = ["ray", "start", *sys.argv[1:]]
    scripts.main()


if __name__ == "__main__":
    main()
