"""Lab 3 starter: lab 2's items API, to be cached in Redis. It starts and answers /healthz.

Look for `TODO(lab 3)`: every read and write of /items goes through the cache, whose methods
answer 501 Not Implemented until you write them.
"""
