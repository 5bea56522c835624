"""Lab 1's contract, re-run on lab 2's implementation: the API must behave as before.

The same tests, with the same points, now against PostgreSQL instead of a dict in memory.
"""

from labs.lab01_rest.tests.test_items_contract import *  # noqa: F403
