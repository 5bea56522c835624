"""Protection under overload: per-client rate limits and load shedding (see middleware.py)."""
