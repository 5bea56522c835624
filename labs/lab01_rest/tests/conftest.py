"""Lab 1 fixtures: none of its own; the server under test keeps items in memory.

The shared fixtures (`client`, `base_url`, `impl_dir`...) come from `shared.testing.http`.
Later labs re-run the items contract on their own implementation (see
`shared/testing/regression.py`).
"""

# Modules later labs re-run (their REGRESSION names this lab).
CONTRACT = ("test_items_contract.py",)
