"""Errors a user can cause and fix (bad config, missing or broken input, missing hardware).

The CLI prints these as one sentence without a traceback; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """The message names the thing that is wrong and the fix."""


class ConfigError(UserError, ValueError):
    """A config the pipeline cannot run; the message names the key and the fix."""
