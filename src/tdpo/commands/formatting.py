"""Help text formatting shared by the ``tdpo`` commands."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows a flag's default unless it is None, False or empty, or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and "default" not in text and default is not None and default is not False
                and default != argparse.SUPPRESS and default != []):
            text += " (default: %(default)s)"
        return text
