"""Self-test: the runner, report rendering and remediation hints."""
