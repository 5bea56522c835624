"""Labs 1 and 2, re-run on lab 3's implementation: the cache must not change the API.

The same tests, with the same points: every answer must be what PostgreSQL holds, right after
each write, even though reads now come from Redis.
"""

from labs.lab01_rest.tests.test_items_contract import *  # noqa: F403
from labs.lab02_db.tests.test_contract import *  # noqa: F403
