"""The library's own error for a bad setting (a model spec, a method name, a run's options), and
``first_line`` / ``one_line``, how one-line reasons are cut from exceptions.

Its message starts with the name of the Python parameter (``model:``); the ``pathattr`` command
shows it as its flag (``--model:``) and exits with code 2.
"""


class SettingError(ValueError):
    """A bad setting. ``param``: the Python parameter(s) it concerns (``"batch_size"``, or
    several: ``"workers, steps"``), which start the message (``"batch_size: must be ..."``);
    the command line shows them as its flags (``flag_message``: ``"--batch-size: ..."``)."""

    def __init__(self, message: str, param: str | None = None):
        self.param, self.reason = param, message
        super().__init__(f"{param}: {message}" if param else message)

    def flag_message(self) -> str:
        """The message as the command line says it, each parameter as its flag."""
        if not self.param:
            return str(self)
        flags = ", ".join("--" + p.strip().replace("_", "-") for p in self.param.split(","))
        return f"{flags}: {self.reason}"


class NonFiniteOutput(ValueError):
    """The model's output is NaN or inf where a method evaluates it; the message names the
    example and the path point."""


class PathError(ValueError):
    """A path whose ends do not reproduce ``F(x')`` and ``F(x)``, or whose output jumps at the
    baseline: its completeness check would be meaningless. The message names the example, the
    cause and the remedy."""


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` with control characters other than those in ``keep`` escaped (``\\x1b``): a
    file name holding terminal escapes or line breaks (``keep=""`` for a name) cannot recolour
    the terminal or forge a line of pathattr's output."""
    return "".join(c if c in keep or (c.isprintable() or c == " ") else
                   c.encode("unicode_escape").decode("ascii") for c in text)


class EscapedStream:
    """A text stream that writes through ``printable``; everything else is the wrapped one's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def first_line(e: BaseException) -> str:
    """An exception's message up to its first line break ('' if it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def one_line(e: BaseException) -> str:
    """``Type: first line of the message``, or just ``Type`` for an exception without one."""
    text = first_line(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
