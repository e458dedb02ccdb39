"""The merge gate: a reviewed, green PR that closes an approved issue is merged, once."""
