"""Small model objects between the store / workers and the widgets (widgets never touch SQL or pipes)."""
