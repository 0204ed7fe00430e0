"""Alembic migrations of the store (run programmatically by `ul_engine.store.db.upgrade`)."""
