"""The one base class for mistakes a user can fix (bad config, bad data, missing weights), and the
two of them that only a trial finds.

The CLI prints these as one message and exits with code 2; any other exception is a bug in raytrain
and keeps its traceback. In a sweep, a trial that raises one fails at once, without Tune's retries:
running it again cannot help (sweeps/failures.py).
"""


class UserError(ValueError):
    """Something in the user's input is wrong; the message names the file, field and fix."""


EXIT_USER_ERROR = 2  # what the CLI exits with for a UserError: nothing ran, fix the input and run again


# The driver unpickles a trial's exception to tell a user error from a lost node. These three are raised
# by torch code (training/models.py, training/trainable.py) but defined here, in the standard library
# only: a class defined in a torch module would make that unpickling import torch into the driver.


class ModelError(UserError):
    """An architecture that cannot be built as asked (unknown name, missing pretrained weights)."""


class OutOfGPUMemory(UserError):
    """A trial's batch does not fit in its share of the GPU; the message says what to change."""


class DamagedCheckpoint(UserError):
    """No checkpoint of a trial can be loaded as the plain tensors and numbers raytrain writes: torn,
    or replaced by something else (a planted pickle is refused, never run)."""
