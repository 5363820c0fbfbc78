"""One module per `study` sub-command (see study/cli.py)."""
