"""Errors a user can cause. The CLI prints them in one line and exits 2; the GUI shows them in place."""

from __future__ import annotations


class ULError(Exception):
    """Base for every mistake a user can make and act on (bad config, missing run, unreadable input)."""


class ConfigError(ULError):
    """A config field is unknown or out of range; the message names the field and the allowed values."""


class RunNotFound(ULError):
    """No run matches the given id or name."""


class DataError(ULError):
    """A data source cannot be used (empty folder, unreadable file, decompression bomb)."""


class CheckpointError(ULError):
    """A checkpoint or model file is missing, corrupt, or holds something other than plain tensors."""


class ModelFileError(CheckpointError):
    """A model file (bundle, checkpoint) was refused before its weights were allocated or used: a pickle, a
    damaged header or JSON, a config that does not fit the tensors, non-float or non-finite weights, or
    bytes that changed since the file was recorded. The message names the file and the first fault."""


class DiskFullError(ULError):
    """The disk filled up while writing; earlier files are kept."""


class ReadOnlyDataFolder(ULError):
    """The data folder cannot be written (a read-only mount or permissions); reading commands still work."""


class TrainingDiverged(ULError):
    """Too many consecutive non-finite losses or gradients."""


class RunStateError(ULError):
    """A run is not in a status that allows the asked change (e.g. resuming a run another process trains)."""
