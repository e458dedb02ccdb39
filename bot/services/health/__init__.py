"""Deep health and what each long-running component knows about its upstream."""
