"""Lab 3 reference solution: lab 2's items API with a Redis cache in front of PostgreSQL."""
