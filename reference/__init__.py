"""Reference implementations that the grader compares student submissions against."""
