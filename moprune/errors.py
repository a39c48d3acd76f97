"""Exceptions that the CLI turns into exit codes: SpecError -> 2, MopruneError -> 1."""

from __future__ import annotations


class MopruneError(Exception):
    """A runtime failure with a message a user can act on (exit code 1)."""


class SpecError(MopruneError):
    """An invalid study spec or command-line usage (exit code 2); raised before any compute."""


class TrialFailed(MopruneError):
    """A trial that cannot produce values; its reason is recorded as the trial's ``fail_reason``."""


class DeviceLost(MopruneError):
    """A sticky CUDA error (illegal address, device-side assert): every later CUDA call in this process fails, so
    the run stops instead of failing each remaining trial in milliseconds; the trial's plan runs again on resume."""


class MeasurementUnreliable(MopruneError):
    """The energy meter failed several trials in a row: the run stops rather than fail every plan uncounted."""
