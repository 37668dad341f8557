"""Storage: SQLAlchemy models, the database handle, per-aggregate store functions, migrations."""
