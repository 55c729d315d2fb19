"""The content-addressed artifact store (DESIGN §3). Knows nothing about models."""

from itictl.store.core import Artifact, BuildContext, Store
from itictl.store.keys import canonical_json, compute_key, sha256_file

__all__ = ["Artifact", "BuildContext", "Store", "canonical_json", "compute_key", "sha256_file"]
