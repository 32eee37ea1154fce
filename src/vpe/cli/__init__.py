"""The `vpe` command line (typer + rich)."""
