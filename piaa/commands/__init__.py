"""The command line in rooms: one module per command group, each a thin shell over a library function.

`cli.py` (installed as `piaa.console.cli`) assembles them into the `piaa` command; `output` holds
what they share (the consoles, tables, the evaluation report, JSON/CSV writing).
"""
