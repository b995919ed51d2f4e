"""Real servers for tests: OpenBao, S3 (moto), PostgreSQL, kubectl and helm."""
