"""hwgrade's web API, database and queue."""

__version__ = "0.1.0"
