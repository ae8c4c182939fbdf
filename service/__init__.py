"""hwgrade's web API, database and queue."""
