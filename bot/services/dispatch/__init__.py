"""Push dispatch: routed work handed to each agent's Valkey stream, exactly once."""
