"""Image inspection (cheap, at the API) and processing (at the worker) with Pillow."""
