"""Monitoring and the feedback loop (arrives with the monitoring issue)."""
