"""What a run shows on the console, and what goes only to the run's log file.

The console shows tandem's own lines (loggers ``tandem*``) and errors from anywhere. Everything
else -- Flower's banners and duplicated lines, deprecation notices, the FAISS loader's instruction
set probe, Ray -- goes only to ``<run dir>/<job>.log`` (Hydra's file handler), which keeps the full
log of the run. ``conf/hydra/job_logging/tandem.yaml`` installs :class:`TandemConsole` on the
console handler; :func:`route_third_party_logs` makes Flower's own logger feed the same handlers.
"""

from __future__ import annotations

import logging

OWN_LOGGERS = ("tandem",)


class TandemConsole(logging.Filter):
    """Passes tandem's records at INFO and above, and anyone's at ERROR and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGERS[0] or record.name.startswith(f"{OWN_LOGGERS[0]}.")
        return own or record.levelno >= logging.ERROR


def route_third_party_logs() -> None:
    """Flower's logger writes to its own console handler and does not propagate: send its records
    through the root handlers instead (console filtered, run log complete). Python warnings are
    logged too (``py.warnings``), so they reach the run log rather than the console."""
    flwr = logging.getLogger("flwr")
    for handler in list(flwr.handlers):
        flwr.removeHandler(handler)
    flwr.propagate = True
    logging.captureWarnings(True)
