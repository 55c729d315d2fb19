"""itictl: Inference-Time Intervention (ITI) as a reproducible command-line workflow.

This top-level package stays import-light: it must not import torch or transformers, so that
`itictl --help` and shell completion are instant.
"""

import time as _time

__version__ = "0.1.0"
STARTED = _time.time()  # when the process imported itictl (≈ its start): eval timings report the time before run_eval
