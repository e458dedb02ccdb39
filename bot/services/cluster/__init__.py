"""Kubernetes admin: rollouts, Flux reconciles, pods and redacted logs."""
