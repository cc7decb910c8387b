"""Endpoint keys: how a scoring request proves it may call a keyed endpoint.

A keyed endpoint's key is shown once (``loopml deploy``, a key rotation); the platform keeps
only its SHA-256 (:func:`key_hash`), which it hands to the endpoint's replicas and publishes
to the admission gates of Serve's proxies, so both check a request the same way
(:func:`key_matches`) and refuse it with the same answer (:data:`KEY_MESSAGE`, 401).
"""

from __future__ import annotations

import hashlib
import hmac

KEY_MESSAGE = "missing or wrong endpoint key: send 'Authorization: Bearer <key>' with the key `loopml deploy` printed"
KEY_REASON = "unauthorized"
HEALTH_ROUTES = ("/v2/health/live", "/v2/health/ready")  # answered without a key (load balancers' probes)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(authorization: str, expected: str | None) -> bool:
    """Whether the ``Authorization`` header value carries the key hashed as ``expected``
    (``None``: a public endpoint, anything goes). Compared in constant time."""
    if not expected:
        return True
    scheme, _, key = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(key_hash(key.strip()), expected)
