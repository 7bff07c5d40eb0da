"""Storage: tables, the database handle, migrations and the delivery queue per dialect."""
