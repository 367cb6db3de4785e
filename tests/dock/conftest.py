"""Live docking: lifecycle commands on a running station, the embedded gateway's proxy, replay at first docking.

The test modules (docknotes, dockrecs) live beside the tests: importable through the pytest `pythonpath`
setting (pyproject.toml), and in the station's processes through PYTHONPATH."""
