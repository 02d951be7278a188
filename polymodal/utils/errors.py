"""The errors a user causes and can fix: bad data, an invalid config, a broken model folder, an
unknown component. Every one subclasses :class:`PolymodalError`, so a caller (the CLI) catches
them all in one place and shows their message as one line instead of a traceback."""

from __future__ import annotations

import yaml


class PolymodalError(Exception):
    """Base of polymodal's own user-facing errors; the message says what was wrong and where."""


class ArtifactError(PolymodalError, ValueError):
    """A model folder (or a pretrained weights folder) whose files are missing, unreadable or not
    what polymodal expects; the message names the file and what was expected."""


# what a command-line front end reports as ``error: <message>`` (exit 2) rather than a traceback:
# polymodal's own errors, plus the standard ones the libraries it calls raise for bad input
USER_ERRORS: tuple[type[Exception], ...] = (
    PolymodalError,
    ValueError,
    FileNotFoundError,
    yaml.YAMLError,  # a config or YAML file that does not parse
)

__all__ = ["USER_ERRORS", "ArtifactError", "PolymodalError"]
