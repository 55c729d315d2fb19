"""The command-line layer: one thin module per command; app.py wires them together."""
