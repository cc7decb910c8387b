"""How much one replica takes (light: the launcher and HAProxy's options read it too).

See :class:`loopml.serving.deployment.ModelEndpoint` for why these numbers."""

MAX_ONGOING_REQUESTS = 4  # requests a replica runs at once
MAX_QUEUED_REQUESTS = 4  # Serve's Python proxy: requests waiting for a replica, per proxy and deployment
RETRY_AFTER_S = 1  # what every refusal asks the caller to wait
# HAProxy, once an endpoint's queue overflowed (a load beyond capacity): the requests it lets
# in flight per replica (running or waiting), and for how long after the last overflow (seconds)
OVERLOAD_INFLIGHT = 2
OVERLOAD_HOLD_S = 10
