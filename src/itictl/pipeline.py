"""The chain behind every intervention, built or reused through the store:

    model → activations (tqa_mc2) → probes (fold i) → tuning activations (tqa_gen_end_q) → intervention

Owns `ChainSpec` (everything that identifies the chain up to the probes: model + revision, data,
limits, folds, dtype/device), `Setting` (K, α, direction: one intervention on a fold's probes),
`Base` (the fold-independent artifacts: model, activations, tuning activations), `Chain` (one
finished chain) and the functions that build them. `itictl intervene`, `itictl probe` (when it
builds activations) and `itictl eval` (per fold and setting) all go through here, so equal options
give equal keys everywhere, and the model is always pinned (a Hub model's resolved commit is what
the extraction steps use).

    spec.check() / setting.check()            every option, before any work
    check_folds(n_questions, folds, val_ratio) each fold leaves a non-empty train and validation part
    load_questions(spec) / questions_held(spec, tqa)   the dataset, read without writing the store
    model_of(store, spec, out)                the `model` artifact (a GGUF is converted once, here)
    activations(store, spec, model_art, fmt, ...)      one extraction with the spec's limits
    prepare(store, spec, ...) -> Base         model, activations and tuning activations
    fold_probes(store, spec, acts, fold, ...) probes of one fold (fold None: all questions, no test fold)
    intervention(store, spec, probes, tuning, setting, ...)
    build_chain(store, spec, setting, fold=0, probes=REF, tuning=REF, steering=Steer(...), out) -> Chain
    final_intervention(store, spec, setting, model_art=, acts=, tuning=, out) -> Chain   fold None, for shipping
    steer(store, spec, chain, Steer(prompt, ...)) -> {'unsteered', 'steered'} greedy answers

Order of work: options, refs and fold sizes are checked first; then the model; then extraction.

Protocol: ChainSpec.protocol ('itictl' | 'reference', itictl.protocol) gives the defaults of the
switches left None (split, val_draw, backend, sigma_from, tie_break); an explicit switch wins.

Made to grow: a sweep over (K, α, direction) per fold (`tune`) is `prepare` once, `fold_probes` per
fold, `intervention` per setting. The final intervention for bake/push/export ("all questions", the
reference's edit_weight.py fit: probes trained on every question with an 80/20 train/val split and
no test fold, σ over every tuning prompt) is `fold=None` everywhere; `final_intervention` builds it
for one setting (publish.final picks the setting of an eval).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError

TUNING_FORMAT = "tqa_gen_end_q"


@dataclass(frozen=True)
class ChainSpec:
    model: str | None = None  # a --model spec; None: the embedded default
    revision: str | None = None  # Hub revision of a Hub model (resolved to a commit once)
    data_dir: str | Path | None = None  # TruthfulQA folder; None: $ITICTL_DATA, else the Hub
    dataset: str = "tqa_mc2"  # prompt format the probes are trained on
    tuning_dataset: str = TUNING_FORMAT  # prompt format of the tuning activations (σ)
    limit: int | None = None  # the first N prompts of each format
    limit_questions: int | None = None  # the prompts of the first N questions (eval); wins over limit
    folds: int = 2
    val_ratio: float = 0.2
    split: str | None = None  # None: the protocol's (itictl: random, reference: contiguous)
    seed: int = 42  # folds, validation split, tqa_gen_end_q's other question, random directions
    backend: str | None = None  # None: the protocol's (torch | sklearn)
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | dict | None = None
    protocol: str = "itictl"  # itictl | reference: the defaults of the switches left None (itictl.protocol)
    val_draw: str | None = None  # seeded | stream
    sigma_from: str | None = None  # train | all
    tie_break: str | None = None  # lower | argsort

    def __post_init__(self) -> None:
        """Fill the switches left None from the protocol (an explicit switch wins)."""
        from itictl.protocol import resolve

        sw = resolve(self.protocol, check=False, split=self.split, val_draw=self.val_draw, backend=self.backend,
                     sigma_from=self.sigma_from, tie_break=self.tie_break)  # bad values: check()
        for name in ("split", "val_draw", "backend", "sigma_from", "tie_break"):
            object.__setattr__(self, name, getattr(sw, name))

    def check(self) -> None:
        """One-line errors for every bad option, before any work (fold sizes: check_folds)."""
        from itictl.data.prompts import check_format
        from itictl.intervene.build import check_reference_switches
        from itictl.models.devices import compute_device, parse_device_map, resolve_dtype
        from itictl.probe.step import validate_options
        from itictl.protocol import check_protocol

        check_protocol(self.protocol)
        validate_options(self.folds, 0, self.val_ratio, self.split, self.backend, self.val_draw)
        check_reference_switches(self.sigma_from, self.tie_break)
        check_format(self.dataset)
        check_format(self.tuning_dataset)
        for name, v in (("--limit", self.limit), ("--limit-questions", self.limit_questions)):
            if v is not None and v < 1:
                raise BadInputError(f"{name} must be at least 1 (got {v})", f"omit {name} for all of them")
        resolve_dtype(self.dtype, compute_device(self.device, parse_device_map(self.device_map)))

    def check_fold(self, fold: int | None) -> None:
        """fold: the test fold, 0..folds-1; None: all questions (train/val split, no test fold)."""
        if fold is not None and not 0 <= fold < self.folds:
            raise BadInputError(f"--fold must be in 0..{self.folds - 1}, got {fold}", "folds are numbered from 0")


@dataclass(frozen=True)
class Setting:
    """One intervention on top of a fold's probes."""

    heads: int
    alpha: float
    direction: str = "com"

    def check(self, n_layers: int | None = None, n_heads: int | None = None) -> None:
        from itictl.intervene.build import validate

        validate(self.heads, self.alpha, self.direction, n_layers, n_heads)


@dataclass
class Base:
    """The fold-independent part of the chain."""

    model: Any  # `model` artifact
    activations: Any | None  # tqa_mc2 activations (None when the probes were given)
    tuning: Any | None  # tuning activations (None until needed)


@dataclass
class Chain:
    model: Any
    activations: Any | None
    tuning: Any
    probes: Any
    intervention: Any
    cached: bool  # the intervention was already in the store
    answers: dict[str, str] | None = None  # {'unsteered', 'steered'} when build_chain steered a prompt


# ---- checks before any work --------------------------------------------------------------------
def check_folds(n_questions: int, folds: int, val_ratio: float) -> None:
    """Every fold's training questions (all but that fold's) must split into a non-empty train and a
    non-empty validation part with `val_ratio` (the split data.train_val_split makes)."""
    n, k = int(n_questions), int(folds)
    if k > n:
        raise BadInputError(f"{n} questions cannot make {k} folds", "use more questions or fewer --folds")
    for i in range(k):
        m = n - (n // k + (1 if i < n % k else 0))  # training questions of fold i (np.array_split sizes)
        n_train = int(m * (1 - val_ratio))
        if n_train == 0 or n_train == m:
            part = "train" if n_train == 0 else "validation"
            raise BadInputError(f"{n} questions in {k} folds leave {m} training question(s) in fold {i}: "
                                f"--val-ratio {val_ratio:g} makes its {part} part empty",
                                "use more questions (--limit / --limit-questions) or fewer --folds")


def check_questions(n_questions: int, spec: ChainSpec, fold: int | None) -> None:
    """check_folds for a test fold; for fold None (all questions) the one train/val split of all of
    them must leave both parts non-empty."""
    if fold is not None:
        return check_folds(n_questions, spec.folds, spec.val_ratio)
    n = int(n_questions)
    n_train = int(n * (1 - spec.val_ratio))
    if n_train == 0 or n_train == n:
        part = "train" if n_train == 0 else "validation"
        raise BadInputError(f"--val-ratio {spec.val_ratio:g} leaves the {part} part of {n} question(s) empty",
                            "use more questions (--limit / --limit-questions) or another --val-ratio")


def data_dir_of(spec: ChainSpec) -> Path | None:
    """The TruthfulQA folder: spec.data_dir, else $ITICTL_DATA, else None (the Hub)."""
    from itictl.config import data_dir

    return data_dir(spec.data_dir)


def load_questions(spec: ChainSpec):
    """The TruthfulQA table the chain will use (read only; the store's `dataset` object comes later)."""
    from itictl.data import load_truthfulqa

    return load_truthfulqa(data_dir_of(spec))


def questions_held(spec: ChainSpec, tqa) -> int:
    """How many questions the spec's activations (format spec.dataset) will hold."""
    if spec.limit_questions:
        return min(spec.limit_questions, len(tqa.questions))
    if spec.limit is None:
        return len(tqa.questions)
    from itictl.data import build_prompts

    return len({p.question_index for p in build_prompts(tqa, spec.dataset, seed=spec.seed)[:spec.limit]})


def _prompt_limit(spec: ChainSpec, tqa, fmt: str) -> int | None:
    """--limit counts prompts; --limit-questions N takes exactly the prompts of the first N
    questions (so the probes' folds are eval's folds); None: every prompt."""
    if not spec.limit_questions:
        return spec.limit
    from itictl.data import build_prompts
    from itictl.data.prompts import SEEDED_FORMATS

    tqa = tqa if tqa is not None else load_questions(spec)
    prompts = build_prompts(tqa, fmt, seed=spec.seed if fmt in SEEDED_FORMATS else 0)
    count = sum(1 for p in prompts if p.question_index < spec.limit_questions)
    return None if count >= len(prompts) else count


# ---- the steps ---------------------------------------------------------------------------------
def model_of(store, spec: ChainSpec, out=None):
    """The `model` artifact of spec.model at spec.revision (the embedded GGUF is converted once)."""
    from itictl.models import ensure_model

    return ensure_model(store, spec.model, revision=spec.revision, out=out)


def activations(store, spec: ChainSpec, model_art, fmt: str, *, tqa=None, out=None, dist=None):
    """-> (activations artifact, cached) of `fmt` from exactly `model_art` (a Hub model at its commit)."""
    from itictl.extract import run_extract
    from itictl.models import model_spec_of, revision_of

    limit = _prompt_limit(spec, tqa, fmt)
    return run_extract(store, model_spec_of(model_art), fmt, data_dir_of(spec), limit=limit, dtype=spec.dtype,
                       device=spec.device, seed=spec.seed, out=out, revision=revision_of(model_art),
                       device_map=spec.device_map, dist=dist)


def prepare(store, spec: ChainSpec, *, tqa=None, model_art=None, out=None, dist=None) -> Base:
    """Model, activations (spec.dataset) and tuning activations (spec.tuning_dataset): what every
    fold and setting shares."""
    model_art = model_art if model_art is not None else model_of(store, spec, out)
    acts, _ = activations(store, spec, model_art, spec.dataset, tqa=tqa, out=out, dist=dist)
    tuning, _ = activations(store, spec, model_art, spec.tuning_dataset, tqa=tqa, out=out, dist=dist)
    return Base(model_art, acts, tuning)


def fold_probes(store, spec: ChainSpec, acts, fold: int | None, *, out=None, device=None):
    """-> (probes artifact, cached) trained on every fold but `fold` (validation: val_ratio of them).
    fold=None: on all questions, val_ratio of them for validation, no test fold (bake/push)."""
    spec.check_fold(fold)
    from itictl.probe.step import run_probe

    return run_probe(store, acts, folds=spec.folds, fold=fold, val_ratio=spec.val_ratio, seed=spec.seed,
                     split=spec.split, backend=spec.backend, out=out, device=device, val_draw=spec.val_draw)


def intervention(store, spec: ChainSpec, probes_art, tuning_art, setting: Setting, *, out=None,
                 model_key: str | None = None):
    """-> (intervention artifact, cached): the setting's heads, directions and strengths."""
    from itictl.intervene.build import run_intervene

    return run_intervene(store, probes_art, tuning_art, heads=setting.heads, alpha=setting.alpha,
                         direction=setting.direction, seed=spec.seed, out=out, model_key=model_key,
                         sigma_from=spec.sigma_from, tie_break=spec.tie_break)


# ---- one whole chain (itictl intervene) --------------------------------------------------------
def _open(store, ref: str | None, kind: str):
    return store.open(ref, kind=kind) if ref else None


def build_probes(store, spec: ChainSpec, *, fold: int | None = 0, acts_ref: str | None = None,
                 probe_device: str | None = None, out=None):
    """`itictl probe`: -> (activations, probes, cached) of one fold, on the activations `acts_ref`
    names, else on spec.dataset's activations of spec's model (built or reused). probe_device
    (a --device value) is where the probes train; options and fold sizes are checked first."""
    from itictl.models.devices import resolve_device

    spec.check()
    spec.check_fold(fold)
    acts = _open(store, acts_ref, "activations")
    if acts is None:
        check_questions(questions_held(spec, load_questions(spec)), spec, fold)
    train_device = resolve_device(probe_device) if probe_device is not None else None  # a bad one: exit 4
    if acts is None:
        acts, _ = activations(store, spec, model_of(store, spec, out), spec.dataset, out=out)
    probes, cached = fold_probes(store, spec, acts, fold, out=out, device=train_device)
    return acts, probes, cached


def _model_for(store, spec: ChainSpec, probes_art, out):
    """spec's model; with given probes and no --model/--revision, the probes' own model."""
    from itictl.intervene.build import check_probes_model

    p_model = probes_art.read_json("probes.json").get("model_key") if probes_art is not None else None
    if probes_art is not None and spec.model is None and spec.revision is None:
        if not p_model or not store.has(p_model):
            raise BadInputError(f"the model of probes {probes_art.key[:12]} is not in this store", "pass --model")
        return store.get(p_model)
    model_art = model_of(store, spec, out)
    if probes_art is not None:
        check_probes_model(probes_art.key, p_model, model_art.key, spec.model or "the embedded model")
    return model_art


def _layout(probes_art, model_art) -> tuple[int | None, int | None]:
    """(layers, heads) to bound K with: the probes' layout, else the model's."""
    if probes_art is not None:
        lay = probes_art.read_json("probes.json").get("layout") or {}
        return lay.get("L"), lay.get("H")
    from itictl.models import model_info

    info = model_info(model_art)
    return info.get("n_layers"), info.get("n_heads")


def build_chain(store, spec: ChainSpec, setting: Setting, *, fold: int | None = 0, probes: str | None = None,
                tuning: str | None = None, steering: "Steer | None" = None, out=None) -> Chain:
    """The whole chain for one fold and setting (`itictl intervene`). `probes` / `tuning` (refs)
    skip building those; with `steering`, chain.answers holds the unsteered and steered answers.
    Every option, ref and fold size is checked before the model is converted or loaded."""
    spec.check()
    setting.check()
    if steering is not None:
        steering.check()
    probes_art = _open(store, probes, "probes")
    tuning_art = _open(store, tuning, "activations")
    if probes_art is None:
        spec.check_fold(fold)
        check_questions(questions_held(spec, load_questions(spec)), spec, fold)
    model_art = _model_for(store, spec, probes_art, out)
    setting.check(*_layout(probes_art, model_art))  # K within the model's heads, before extracting
    acts = None
    if probes_art is None:
        acts, _ = activations(store, spec, model_art, spec.dataset, out=out)
        probes_art, _ = fold_probes(store, spec, acts, fold, out=out)
    if tuning_art is None:
        tuning_art, _ = activations(store, spec, model_art, spec.tuning_dataset, out=out)
    iv, cached = intervention(store, spec, probes_art, tuning_art, setting, out=out, model_key=model_art.key)
    chain = Chain(model_art, acts, tuning_art, probes_art, iv, cached)
    if steering is not None:
        chain.answers = steer(store, spec, chain, steering, out)
    return chain


def final_intervention(store, spec: ChainSpec, setting: Setting, *, model_art=None, acts=None, tuning=None,
                       out=None) -> Chain:
    """The intervention to ship for `setting` (bake/push/export after an eval, `tune && bake`): the
    reference's edit_weight.py fit, probes on all questions (fold None: val_ratio of them for
    validation, no test fold) and σ over every tuning prompt. model_art / acts / tuning: artifacts
    already made (an eval's parents), else built or reused from spec's model and data. Options, K
    and the question count are checked before any model work."""
    spec.check()
    setting.check()
    if acts is None:
        check_questions(questions_held(spec, load_questions(spec)), spec, None)
    model_art = model_art if model_art is not None else model_of(store, spec, out)
    setting.check(*_layout(None, model_art))
    if acts is None:
        acts, _ = activations(store, spec, model_art, spec.dataset, out=out)
    if tuning is None:
        tuning, _ = activations(store, spec, model_art, spec.tuning_dataset, out=out)
    probes, _ = fold_probes(store, spec, acts, None, out=out)
    iv, cached = intervention(store, spec, probes, tuning, setting, out=out, model_key=model_art.key)
    return Chain(model_art, acts, tuning, probes, iv, cached)


@dataclass(frozen=True)
class Steer:
    """Generate greedy answers to `prompt` without and with the chain's intervention."""

    prompt: str
    max_new_tokens: int = 64
    chat: bool = True  # wrap the prompt in the model's chat template
    positions: str = "generated"  # generated (last prompt token + new tokens) or all

    def check(self) -> None:
        if self.positions not in ("generated", "all"):
            raise BadInputError(f"unknown --positions {self.positions!r}", "use generated or all")
        if self.max_new_tokens < 1:
            raise BadInputError(f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})", "e.g. 64")


def steer(store, spec: ChainSpec, chain: Chain, how: Steer, out=None) -> dict[str, str]:
    """{'unsteered', 'steered'} answers; the model loaded with spec's dtype/device/device map."""
    import contextlib

    from itictl.intervene.build import load_deltas
    from itictl.intervene.steering import steered_generate
    from itictl.models import load_model

    lm = load_model(store, chain.model, dtype=spec.dtype, device=spec.device, device_map=spec.device_map)
    deltas = load_deltas(chain.intervention)
    with out.status("generating") if out is not None else contextlib.nullcontext():
        plain = steered_generate(lm.model, lm.tokenizer, [how.prompt], None, how.max_new_tokens, how.chat)[0]
        steered = steered_generate(lm.model, lm.tokenizer, [how.prompt], deltas, how.max_new_tokens, how.chat,
                                   positions=how.positions)[0]
    return {"unsteered": plain, "steered": steered}
