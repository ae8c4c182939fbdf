"""Submissions: upload, queue, grade, and the one result each submission gets."""
