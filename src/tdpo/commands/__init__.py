"""Thin command-line front ends over the library, one module per ``tdpo`` subcommand."""
