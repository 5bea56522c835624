"""Lab 1 starter: an items API with FastAPI. It starts and answers /healthz; the rest is yours.

Look for `TODO(lab 1)`: every endpoint of /items answers 501 Not Implemented until you write it.
"""
