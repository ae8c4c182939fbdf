"""Students and instructors, authenticated by bearer tokens stored hashed."""
