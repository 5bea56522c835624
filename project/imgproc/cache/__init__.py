"""Redis cache of de-duplication keys and job statuses; PostgreSQL stays the truth."""
