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
