"""The extract step: TruthfulQA prompts -> head-wise (and optionally layer-wise) activations.

step.py      run_extract: the key, the model/dataset parents, data-parallel protocol
resumable.py extract_to_h5: plan, compute (resuming), merge into activations.h5
engine.py    tokenising, batch planning, forwards with o_proj input hooks
chunks.py    resumable chunk folders, the background chunk writer, the in-memory Assembly
h5.py        the activations.h5 payload: writer and the Activations reader
h5_write.py  the big datasets' raw chunks, allocated by HDF5 and written with parallel pwritev
"""

from itictl.extract.chunks import CHUNK_PROMPTS
from itictl.extract.engine import default_batch_tokens
from itictl.extract.h5 import H5_NAME, Activations, open_activations, open_activations_file
from itictl.extract.resumable import extract_to_h5
from itictl.extract.step import STORE_DTYPES, extract_params, run_extract

__all__ = ["CHUNK_PROMPTS", "H5_NAME", "STORE_DTYPES", "Activations", "default_batch_tokens",
           "extract_params", "extract_to_h5", "open_activations", "open_activations_file", "run_extract"]
