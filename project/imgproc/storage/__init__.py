"""Content-addressed file storage (sha256) under the configured data directory."""
