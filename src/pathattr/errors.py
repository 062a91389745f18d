"""The library's own error for a bad setting (a model spec, a method name, a run's options).

Its message starts with the name of the setting, as the command line spells it (``--model:``),
so the ``pathattr`` command shows it as it is and exits with code 2.
"""


class SettingError(ValueError):
    """A bad setting; the message starts with the setting's name."""
