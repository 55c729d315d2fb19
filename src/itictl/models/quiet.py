"""Quiet loading: transformers' progress bars and info/warning logging follow -q (set_load_quiet)."""

from __future__ import annotations

# ---- quiet loading ----------------------------------------------------------------------------

_QUIET = False


def set_load_quiet(quiet: bool) -> None:
    """Process-wide default for load_model(quiet=None): the CLI sets it from -q/--quiet."""
    global _QUIET
    _QUIET = bool(quiet)


def load_quiet() -> bool:
    """The process-wide default set by set_load_quiet."""
    return _QUIET


class hf_quiet:  # noqa: N801 (used like a function: `with hf_quiet():`)
    """Within the block, transformers' progress bars ("Loading weights", "Writing model shards") and
    info/warning logging are off when quiet (None: the set_load_quiet default); the previous
    settings come back afterwards."""

    def __init__(self, quiet: bool | None = None):
        self.quiet = _QUIET if quiet is None else bool(quiet)

    def __enter__(self):
        if not self.quiet:
            return self
        from transformers.utils import logging as hf_logging

        self._bar = hf_logging.is_progress_bar_enabled()
        self._level = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        if not self.quiet:
            return False
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)
        if self._bar:
            hf_logging.enable_progress_bar()
        return False


