"""Lab 2 starter: lab 1's items API, to be stored in PostgreSQL. It starts and answers /healthz.

Look for `TODO(lab 2)`: every endpoint of /items answers 501 Not Implemented until the
repository talks to the database, and the model and the first migration are incomplete.
"""
