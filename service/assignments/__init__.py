"""Assignments: a stored copy of the grader's spec plus the course's own rules (deadline, limits)."""
