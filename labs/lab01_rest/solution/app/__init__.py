"""Lab 1 reference solution: an in-memory REST API for items, built with FastAPI."""
