"""The one base class for mistakes a user can fix (bad config, bad data, missing weights).

The CLI prints these as one message and exits with code 2; any other exception is a bug in raytrain
and keeps its traceback.
"""


class UserError(ValueError):
    """Something in the user's input is wrong; the message names the file, field and fix."""


EXIT_USER_ERROR = 2  # what the CLI exits with for a UserError: nothing ran, fix the input and run again
