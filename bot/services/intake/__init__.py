"""Intake: recording what the agents report (events, claims, execution and agent logs)."""
