"""What the ``pathattr`` command does, one module per concern; ``cli.py`` only parses arguments.

inputs: models, images and targets from the command line; methods: the method registry;
image: the per-image pipeline (attributions, curves, neurons, files, report); text: sentences.
"""


class UsageError(Exception):
    """A bad command-line argument (exit code 2); the message starts with the argument's name."""
