"""Test infrastructure: per-run namespaces in real services, and a real server per test run."""
