"""The one exception type optc raises for bad input and unsupported cases.

Its message is a single line naming what is wrong (file, node, op); the CLI prints it as
``optc: error: <message>`` and exits non-zero.
"""


class OptcError(Exception):
    """A user-facing error: bad input, an unsupported case, a failed validation."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class OptcWarning(UserWarning):
    """Something the user should know about a result that was still written (an int8 model
    below the SQNR floor, a fold left approximate): one line, printed by the CLI as
    ``optc: warning: <message>``."""


class IRError(OptcError):
    """Misuse of the IR API (a node inserted twice, an output given two producers, a value
    removed while still read): always a bug in the code that called it, so the pass manager
    reports it with a reproducer rather than as the user's error."""


def at_node(label: str, error: Exception) -> OptcError:
    """``error``, raised while running a node, as one line naming the node (an executor's
    kernel error: an OptcError keeps its message, others add their type)."""
    if isinstance(error, OptcError):
        return OptcError(f"{label}: {error}")
    return OptcError(f"{label}: {type(error).__name__}: {error}")
