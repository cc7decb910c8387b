"""Model endpoints on Ray Serve (arrives with the serving issue)."""
