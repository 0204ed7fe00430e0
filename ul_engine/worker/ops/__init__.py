"""Session-worker ops, one module per family; each registers its handlers with `session.op`."""
