"""The artifact store (DESIGN §3): input-addressed (a key hashes what an object is made from),
content-verified (manifests carry payload digests, checked on read). Knows nothing about models.

Modules: store.py (Store), artifact.py (Artifact, BuildContext), keys.py, manifest.py, locks.py,
refs.py, gc.py, digests.py, atomic.py (the one atomic-write helper), oserrors.py.
"""

from itictl.store.artifact import Artifact, BuildContext
from itictl.store.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from itictl.store.keys import canonical_json, compute_key, sha256_file
from itictl.store.store import Store

__all__ = ["Artifact", "BuildContext", "Store", "atomic_path", "canonical_json", "compute_key", "sha256_file",
           "write_bytes_atomic", "write_text_atomic"]
