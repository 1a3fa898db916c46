"""Hidden checks and answer keys: staff only, never shipped to students or into a sandbox."""
