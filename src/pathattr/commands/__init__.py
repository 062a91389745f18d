"""What the ``pathattr`` command does, one module per concern; ``cli.py`` only parses arguments.

image: the per-image pipeline (attributions, curves, neurons, files, report); text: sentences;
run: the dataset-runner subcommands. Models, images and targets come from ``pathattr.named``,
methods from ``pathattr.registry``; their ``SettingError`` is the command's usage error.
"""

import argparse

from ..errors import SettingError as UsageError

__all__ = ["UsageError", "positive_int", "step_count"]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def step_count(text: str) -> int | str:
    """An argparse type: a path method's step count, ``1 .. quadrature.MAX_STEPS`` (checked
    when parsing, so a run never records every item as failed for it), or ``auto``."""
    from ..quadrature import MAX_STEPS

    if text == "auto":
        return text
    n = positive_int(text)
    if n > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"at most {MAX_STEPS} steps (each is a forward and a "
                                         f"backward pass), got {n}")
    return n
