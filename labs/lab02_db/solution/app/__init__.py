"""Lab 2 reference solution: the items API of lab 1, now stored in PostgreSQL."""
