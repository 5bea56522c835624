"""The pricing service of lab 4: a small outside HTTP service the items API depends on.

It plays a partner's API across the network: it answers a price and a stock level for an
item after a configurable latency, and fails on request. The grader and the benchmark start
it with `python -m app` (cwd = this folder's parent), exactly like the items service.
"""
