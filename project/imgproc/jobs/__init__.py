"""Jobs: the API routes, the job table, the worker task and the reconciler."""
