"""What the agents spend: the ledger, prices, budgets, charts and the key check."""
