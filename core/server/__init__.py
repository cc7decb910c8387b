"""What runs in the platform process: the FastAPI app (:mod:`.app`) and how callers are
authenticated there (:mod:`.service_auth`, the hub's tokens and browser sessions).

``python -m loopml.server`` runs it with uvicorn (:mod:`.__main__`).
"""
