"""Lab 1 second reference solution: the same items API as `solution/`, built with Flask.

Only the HTTP layer differs (routing, dependencies, validation calls, error handlers); the
schemas and the repository are the same modules as in the FastAPI solution.
"""
