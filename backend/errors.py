"""The one error type the backend raises for things a user can fix, and the name of a signal for its messages."""

import signal


class TuneForgeError(Exception):
    """A problem the user caused and can fix; its message is written for them, in one line."""


def signal_name(exit_code: int) -> str:
    """The signal that ended a process, from its negative exit code as Popen gives it: SIGKILL, or signal N."""
    number = -exit_code
    return signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
