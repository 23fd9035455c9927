"""The exceptions jointperception raises for bad input; the CLI prints them as one line."""


class JointPerceptionError(Exception):
    """Base class: a problem with user input (file, config, frame) that the user can fix."""


class ConfigError(JointPerceptionError, ValueError):
    """A config file or mapping has an unknown key or a bad value."""


class DataFormatError(JointPerceptionError):
    """A data file is missing, unreadable or corrupt; the message names the file."""


class ModelFileError(JointPerceptionError):
    """A model file is missing, corrupt or does not match the network it claims to hold."""


class InputError(JointPerceptionError):
    """A frame or a command-line input is unusable (empty folder, size mismatch, NaN...)."""


class ShortInputError(DataFormatError):
    """A video or bag yielded fewer frames than its container or metadata declares (raised after
    the last frame read); commands finish on the frames read, warn, and exit EXIT_SHORT_INPUT."""


EXIT_SHORT_INPUT = 3  # exit status of a predict / replay run that read fewer frames than the input declares
