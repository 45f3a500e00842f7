"""Errors a user can act on. The CLI prints their message alone, without a traceback."""

from __future__ import annotations


class OviBenchError(Exception):
    """Base class: the message names the problem and the fix."""


class SpecError(OviBenchError):
    """A run spec (or a component's parameters) is malformed."""


class UnknownNameError(OviBenchError):
    """A registry lookup for a name that nobody registered."""


class ModelLoadError(OviBenchError):
    """Weights or a model folder could not be loaded."""


class DataError(OviBenchError):
    """Prompt files, banks or stored artifacts are missing, corrupt or inconsistent."""


class PreflightError(OviBenchError):
    """What a run needs (models, data files, a metric for its categories) is missing: found before any work."""
