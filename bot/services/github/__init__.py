"""GitHub as a source: the agent-ready sync and the signed webhooks."""
