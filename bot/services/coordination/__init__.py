"""The coordination loop: sync, stuck work, the merge sweep and the summary."""
