"""hwgrade's evaluation engine: safe intake, sandboxed runs of student code, trusted scoring.

A library with no database, web or Celery imports (service -> grader -> reference).
"""
