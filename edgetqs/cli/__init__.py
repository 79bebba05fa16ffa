"""Command-line interface: one module per pipeline stage, registered in app.py."""
