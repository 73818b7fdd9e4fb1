"""The project's one exception type for input a user can fix."""


class ConsisError(ValueError):
    """Bad input or missing data: the message is one line naming the file and the fix."""
