"""The work: routing, the queue and an issue's story, steering, and PRs linked to issues."""
