"""The one error the local stack raises, so callers catch exactly that.

Its message is a sentence a developer can act on, with the tail of the log of
the process that failed when there is one.
"""


class StackError(RuntimeError):
    """The stack could not start or stop; the message says why and what to do."""
