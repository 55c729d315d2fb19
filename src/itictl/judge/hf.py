"""Local Hugging Face causal-LM judges (e.g. AllenAI's Llama-2-7B truth/info judges).

Owns: `hf_judge` (a folder or a Hub id at a pinned commit; P(" yes") from the judge's own
logits), the alias table of published judges (HF_JUDGES), and the download of a judge's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itictl.errors import BadInputError, NotFoundError, RemoteError, StoreError
from itictl.judge.base import Judge
from itictl.secrets import redact

THRESHOLD = 0.5
OPENAI_BATCH = 20  # prompts per /v1/completions request (the legacy API takes a list)

# Local judges published by AllenAI (Llama-2-7B fine-tuned on finetune_truth/info.jsonl).
# The aliases pin the commits that independent public evaluation scripts pin for these two repos
# (several agree; this machine cannot reach the Hub to re-check them). An explicit @REVISION always
# wins; UNVERIFIED_REVISION (None) would mean the main branch, resolved to a commit at each run
# (that commit is in the eval artifact's params either way).
UNVERIFIED_REVISION = None
HF_JUDGES: dict[str, dict[str, Any]] = {
    "truth-llama2-7b": {"repo": "allenai/truthfulqa-truth-judge-llama2-7B",
                        "revision": "8f718cb4e68bc30a488727a0e37190835a7c129e", "kind": "truth"},
    "info-llama2-7b": {"repo": "allenai/truthfulqa-info-judge-llama2-7B",
                       "revision": "72601eff294cbf7e8d7188ae82397e19cb9bb9bd", "kind": "info"},
}



# Files a judge needs from a Hub repo: config, tokenizer and weights: safetensors where the commit
# has them, else PyTorch .bin shards (the pinned AllenAI judge commits have only those), which
# transformers reads with torch.load(weights_only=True): tensors only, never arbitrary pickles.
HUB_JUDGE_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
HUB_JUDGE_BIN_FILES = ["pytorch_model*.bin"]


def _judge_patterns(repo: str, commit: str) -> list[str]:
    """Download patterns for repo@commit: .bin weights only when the commit has no safetensors
    (never both: that would fetch the weights twice). Offline, whatever the cache holds."""
    from huggingface_hub import HfApi

    from itictl.models.identity import hub_endpoint, hub_offline

    if hub_offline():
        return HUB_JUDGE_FILES + HUB_JUDGE_BIN_FILES
    names = [s.rfilename for s in (HfApi(endpoint=hub_endpoint()).model_info(repo, revision=commit).siblings or [])]
    has_st = any(n.endswith(".safetensors") for n in names)
    return HUB_JUDGE_FILES if has_st else HUB_JUDGE_FILES + HUB_JUDGE_BIN_FILES


def _split_revision(rest: str) -> tuple[str, str | None]:
    """'ID_OR_PATH@REV' -> (ID_OR_PATH, REV); an existing path containing '@' is kept whole."""
    if "@" in rest and not Path(rest).expanduser().exists():
        loc, rev = rest.rsplit("@", 1)
        return loc, (rev or None)
    return rest, None


def resolve_hf_judge(rest: str) -> tuple[str, str | None]:
    """(folder or Hub id, revision or None) of an `hf:` spec body: aliases expand to their repo and
    pinned revision (HF_JUDGES); an explicit @REVISION wins over the pin."""
    loc, revision = _split_revision(rest)
    if loc in HF_JUDGES:
        revision = revision or HF_JUDGES[loc]["revision"]
        loc = HF_JUDGES[loc]["repo"]
    return loc, revision


def download_hub_judge(repo: str, commit: str) -> Path:
    """The local snapshot folder of repo@commit (HF cache; downloaded from HF_ENDPOINT when missing)."""
    import errno

    from huggingface_hub import snapshot_download

    from itictl.models.identity import hub_cache_dir, hub_endpoint, hub_offline

    try:
        return Path(snapshot_download(repo, revision=commit, cache_dir=str(hub_cache_dir()), endpoint=hub_endpoint(),
                                      allow_patterns=_judge_patterns(repo, commit), local_files_only=hub_offline()))
    except Exception as e:  # noqa: BLE001 - network, HTTP and cache errors: one line each
        detail = redact(str(e)).splitlines()[0][:160] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise StoreError(f"cannot write judge {repo}@{commit[:12]} to the Hugging Face cache: {detail}",
                             "check free space and permissions of HF_HUB_CACHE") from None
        raise RemoteError(f"cannot download judge {repo}@{commit[:12]} ({type(e).__name__}: {detail})",
                          "check the network / HF_ENDPOINT (HF_HUB_OFFLINE needs it cached), or pass a local "
                          "folder") from None


def hf_judge(rest: str, *, device: str = "cpu", store=None, batch_size: int = 8) -> Judge:
    """A local causal-LM judge from a folder or a Hub id. Hub ids resolve REVISION (default: the
    alias's pin, else main) to a commit now (that commit is the judge's identity); the weights are
    downloaded at that commit on first use."""
    loc, revision = resolve_hf_judge(rest)
    path = Path(loc).expanduser()
    commit = None
    if path.exists():
        if revision:
            raise BadInputError(f"judge folder {path} cannot take a revision (@{revision})",
                                "revisions apply to Hub ids: hf:ORG/NAME@REVISION")
        if not (path / "config.json").is_file():
            raise NotFoundError(f"judge folder {path} has no config.json", "point hf: at a Hugging Face model folder")
        from itictl.models.identity import folder_identity

        ident = {"type": "hf", **folder_identity(store, path)}  # the identity a model folder gets
    else:
        if loc.count("/") != 1:
            raise NotFoundError(f"judge {loc!r} is neither a folder nor a Hub id", "use hf:ORG/NAME[@REV], a folder, or an alias")
        from itictl.models.identity import hub_commit

        commit = hub_commit(loc, revision)
        ident = {"type": "hf", "source": "hub", "repo": loc, "commit": commit}
    state: dict[str, Any] = {}

    def load():
        if "model" in state:
            return state["model"], state["tok"]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from itictl.models.devices import resolve_device

        dev = resolve_device(device)
        where = path if commit is None else download_hub_judge(loc, commit)
        try:
            tok = AutoTokenizer.from_pretrained(where)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32 if dev == "cpu" else torch.float16)
        except (OSError, ValueError) as e:
            raise RemoteError(f"cannot load judge {loc}: {redact(str(e)).splitlines()[0][:160]}",
                              "the judge must be a causal LM folder with weights (safetensors or .bin) and a tokenizer") from None
        model.to(dev).eval()
        state["model"], state["tok"], state["dev"] = model, tok, dev
        return model, tok

    def score(prompts: list[str]) -> list[float]:
        model, tok = load()
        return yes_probability(model, tok, prompts, device=state["dev"], batch_size=batch_size)

    spec = f"hf:{loc}" + (f"@{revision}" if revision else "")
    return Judge(spec=spec, identity=ident, _score=score)


def yes_probability(model, tok, prompts: list[str], *, device: str = "cpu", batch_size: int = 8) -> list[float]:
    """P(" yes" | prompt): the probability of the continuation's tokens (one token for Llama)."""
    import torch

    from itictl.compute.batching import right_pad
    from itictl.extract.engine import pad_token_id

    pad = pad_token_id(tok)
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        bases = tok(chunk)["input_ids"]
        rows = [list(x) for x in tok([p + " yes" for p in chunk])["input_ids"]]
        starts = []
        for base, full in zip(bases, rows):
            n = 0
            while n < min(len(base), len(full)) and base[n] == full[n]:
                n += 1
            # tokenizer merged " yes" away: score its last token; a token needs one before it
            starts.append(max(1, min(n, len(full) - 1)))
        ids, mask = right_pad(rows, pad)
        r_idx = [r for r, row in enumerate(rows) for _ in range(starts[r], len(row))]
        p_idx = [p for r, row in enumerate(rows) for p in range(starts[r] - 1, len(row) - 1)]
        tgt = [t for r, row in enumerate(rows) for t in row[starts[r]:]]
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, T, V]
            lp = logits[r_idx, p_idx].float().log_softmax(-1)  # only the scored positions
            lp = lp[torch.arange(len(tgt)), torch.tensor(tgt, device=lp.device)]
        sums = torch.zeros(len(rows), dtype=torch.float64).index_add_(0, torch.tensor(r_idx), lp.double().cpu())
        out.extend(float(x) for x in sums.exp())
    return out

