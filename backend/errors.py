"""The one error type the backend raises for things a user can fix."""


class TuneForgeError(Exception):
    """A problem the user caused and can fix; its message is written for them, in one line."""
