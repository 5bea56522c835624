"""Lab 4 starter: lab 3's items API, half-way to async. It starts and answers /healthz.

The routes, the dependencies, the database engine and the app's start-up are already async
(read them first: they show the pattern). Look for `TODO(lab 4)`: the repository and the cache
still need their async port, and the pricing client and the quote are yours to write; until
then every /items endpoint answers 501 Not Implemented.
"""
