"""Data parallelism on torch.distributed: who this process is, and the few collectives the steps use.

Owns: `DistContext` (rank, world size, local rank, backend) read from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/MASTER_PORT); initialising and destroying the process
group (NCCL when this rank computes on CUDA, gloo otherwise); the per-rank device (`cuda:LOCAL_RANK`
for --device auto/cuda); object collectives (barrier, broadcast_object, all_gather_object, agree);
and `run_phase`, which turns one rank's exception into a clean, one-line failure on every rank.

Single-process (no torchrun, or WORLD_SIZE=1) is world 1: nothing here imports torch or calls
torch.distributed, and every helper degrades to the identity.

Failure model: steps are a fixed sequence of phases; a phase's body contains no collectives, and
every rank ends each phase with one all_gather of (error, value). If any rank failed, every rank
raises (the failing one its own error, the others `RankFailedError` with the failing rank's
one-line message and exit code), so torchrun sees non-zero exits. A rank killed by a signal never
reaches the gather: torchrun's elastic agent notices the dead worker and terminates the others,
and `torchrun` exits non-zero (see docs/scaling.md). Activations never travel through collectives:
ranks exchange them through files under the store's tmp/; eval's small results (answers, MC scores,
CE/KL values) are gathered with all_gather_object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from itictl.errors import EXIT_INTERNAL, BadInputError, ItictlError, UsageError, describe

TIMEOUT_ENV = "ITICTL_DIST_TIMEOUT_S"  # seconds a collective may wait for the slowest rank
DEFAULT_TIMEOUT_S = 3600


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # 'nccl' | 'gloo' once initialised; None for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()
_current: DistContext = SINGLE


class RankFailedError(ItictlError):
    """Raised on the healthy ranks when another rank failed; carries that rank's exit code."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_INTERNAL):
        super().__init__(message, hint)
        self.exit_code = exit_code


def _int_env(env: Mapping[str, str], name: str, default: int,
             hint: str = "launch with torchrun, which sets it") -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer", hint) from None
    if value < 0:
        raise UsageError(f"{name}={value} is negative", hint)
    return value


def env_context(env: Mapping[str, str] | None = None) -> DistContext:
    """The rank/world torchrun put in the environment (not initialised: backend None)."""
    env = os.environ if env is None else env
    world = _int_env(env, "WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    rank = _int_env(env, "RANK", 0)
    local = _int_env(env, "LOCAL_RANK", rank)
    if rank >= world:
        raise UsageError(f"RANK={rank} is not below WORLD_SIZE={world}", "launch with torchrun, which sets both")
    if not env.get("MASTER_ADDR") or not env.get("MASTER_PORT"):
        raise UsageError(f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set",
                         "launch with `torchrun --nproc-per-node N -m itictl ...`")
    return DistContext(rank=rank, world_size=world, local_rank=local)


def current() -> DistContext:
    return _current


def rank_device(ctx: DistContext, device: str | None) -> str:
    """The device this rank computes on: with world > 1, --device auto/cuda -> cuda:LOCAL_RANK
    (auto -> cpu when there is no GPU); cpu stays cpu; one fixed GPU (cuda:N) for every rank is a
    usage error (NCCL cannot run two ranks on one GPU)."""
    device = (device or "auto").strip().lower()
    if ctx.distributed and device.startswith("cuda:"):
        raise UsageError(f"--device {device} would put all {ctx.world_size} ranks on one GPU",
                         "under torchrun use --device cuda (or auto): rank r takes cuda:LOCAL_RANK; "
                         "pick GPUs with CUDA_VISIBLE_DEVICES")
    if not ctx.distributed or device not in ("auto", "cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise BadInputError("--device cuda: CUDA is not available here", "use --device cpu or auto")
        return "cpu"
    n = torch.cuda.device_count()
    if ctx.local_rank >= n:
        raise UsageError(f"local rank {ctx.local_rank} has no GPU ({n} visible)",
                         f"use --nproc-per-node {n} or fewer, or --device cpu")
    return f"cuda:{ctx.local_rank}"


def init(device: str | None = "auto", env: Mapping[str, str] | None = None) -> DistContext:
    """Join the process group torchrun described (idempotent); world 1 touches no torch API."""
    global _current
    ctx = env_context(env)
    if not ctx.distributed:
        _current = SINGLE
        return SINGLE
    if _current.distributed:
        return _current
    import datetime

    import torch
    import torch.distributed as td

    dev = rank_device(ctx, device)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(dev))
    seconds = _int_env(os.environ, TIMEOUT_ENV, DEFAULT_TIMEOUT_S, f"set {TIMEOUT_ENV} to whole seconds, or unset it")
    timeout = datetime.timedelta(seconds=seconds or DEFAULT_TIMEOUT_S)
    if not td.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(dev)
        td.init_process_group(**kwargs)
    _current = DistContext(rank=td.get_rank(), world_size=td.get_world_size(), local_rank=ctx.local_rank,
                           backend=backend)
    return _current


def shutdown(clean: bool = True) -> None:
    """Leave the process group (a no-op for world 1). On a clean exit the ranks first meet at a
    barrier, so that no rank tears its connections down while a peer is still using the group (a
    rank that destroyed gloo's group while its peer was still finishing was seen to abort, once in
    ~30 CPU runs); after an error they do not wait for each other."""
    global _current
    if _current.distributed:
        import torch.distributed as td

        if td.is_initialized():
            try:
                if clean:
                    td.barrier()
            finally:
                td.destroy_process_group()
    _current = SINGLE


class session:
    """`with distributed.session(device) as ctx:` init on entry, destroy the group on exit."""

    def __init__(self, device: str | None = "auto"):
        self.device = device

    def __enter__(self) -> DistContext:
        return init(self.device)

    def __exit__(self, exc_type, *exc) -> None:
        shutdown(clean=exc_type is None)


# ---- collectives (identity for world 1) -----------------------------------------------------

def barrier(ctx: DistContext | None = None) -> None:
    ctx = ctx or _current
    if ctx.distributed:
        import torch.distributed as td

        td.barrier()


def broadcast_object(value: Any, ctx: DistContext | None = None, src: int = 0) -> Any:
    """Rank `src`'s value on every rank (picklable objects)."""
    ctx = ctx or _current
    if not ctx.distributed:
        return value
    import torch.distributed as td

    box = [value if ctx.rank == src else None]
    td.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(value: Any, ctx: DistContext | None = None) -> list[Any]:
    """Every rank's value, in rank order, on every rank."""
    ctx = ctx or _current
    if not ctx.distributed:
        return [value]
    import torch.distributed as td

    out: list[Any] = [None] * ctx.world_size
    td.all_gather_object(out, value)
    return out


def agree(value: Any, what: str, ctx: DistContext | None = None, hint: str | None = None) -> Any:
    """Check that every rank holds the same `value`; else every rank raises the same one-line
    BadInputError naming the first rank that differs from rank 0."""
    return same(all_gather_object(value, ctx), what, hint)


def same(values: list[Any], what: str, hint: str | None = None) -> Any:
    """agree() on values already gathered (e.g. by run_phase): the common value, else BadInputError."""
    for r, v in enumerate(values):
        if v != values[0]:
            raise BadInputError(f"ranks disagree on the {what}: rank 0 has {_short(values[0])}, rank {r} has {_short(v)}",
                                hint or "launch every rank with the same arguments, data and store")
    return values[0]


def _short(v: Any) -> str:
    s = str(v)
    return s[:16] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else (s if len(s) <= 60 else s[:57] + "...")


def synced(e: BaseException | None) -> bool:
    """True when `e`, or an error it was raised from (a wrapper such as the store's StoreError
    around an OSError), was raised by run_phase on every rank (no further collectives pending)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if getattr(e, "_itictl_synced", False) is True:
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def run_phase(name: str, fn: Callable[[], Any], ctx: DistContext | None = None) -> list[Any]:
    """Run `fn()` on this rank, then gather (error, result) from every rank. Returns the results
    in rank order; if any rank failed, every rank raises (see the module docstring). `fn` must not
    call collectives itself."""
    ctx = ctx or _current
    if not ctx.distributed:
        return [fn()]
    err: BaseException | None = None
    result = None
    try:
        result = fn()
    except BaseException as e:  # noqa: BLE001 - every failure must reach the other ranks
        err = e
    status = all_gather_object((describe(err) if err is not None else None, result if err is None else None), ctx)
    failed = [(r, s[0]) for r, s in enumerate(status) if s[0] is not None]
    if failed:
        if err is not None:
            try:
                err._itictl_synced = True  # type: ignore[attr-defined]
            except AttributeError:
                pass
            raise err
        r, (code, line) = failed[0]
        e = RankFailedError(f"rank {r} of {ctx.world_size} failed during {name}: {line}", None, exit_code=code)
        e._itictl_synced = True  # type: ignore[attr-defined]
        raise e
    return [s[1] for s in status]


def check_device_map(device_map: Any, dist: DistContext | None = None) -> Any:
    """A --device-map value parsed and validated (models.loading.parse_device_map: a name or a
    JSON {module: device} object; bad ones exit 4) and not combined with data parallelism (exit 2)."""
    from itictl.models.devices import parse_device_map

    dmap = parse_device_map(device_map)
    if dmap is not None and dist is not None and dist.distributed:
        raise UsageError("--device-map cannot be combined with torchrun data parallelism (world size "
                         f"{dist.world_size})", "run a model-parallel job as one process, without torchrun")
    return dmap


# ---- work assignment ------------------------------------------------------------------------

def assign_balanced(costs: list[int], world_size: int) -> list[int]:
    """Deterministic greedy (longest first) assignment of items to ranks: item i -> rank. Items
    are taken by decreasing cost (ties: lowest index) and each goes to the least-loaded rank
    (ties: lowest rank), so max load ≤ mean load + max cost."""
    if world_size < 1:
        raise ValueError("world_size must be at least 1")
    load = [0] * world_size
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += costs[i]
    return owner


# ---- one artifact, many ranks ---------------------------------------------------------------

def produce(store, ctx: DistContext, kind: str, params: Mapping[str, Any], parents: Mapping[str, str] | None,
            build: Callable[[Any], None], *, schema_version: int = 1, step_version: int = 1) -> tuple[Any, bool]:
    """store.produce for every rank of a group: rank 0 holds the key lock and commits; the others
    run `build(None)` alongside rank 0's `build(BuildContext)` (so builds may use collectives,
    in the same order on every rank) and then open the committed artifact.

    Protocol: all ranks agree on the key; rank 0 calls store.produce, whose build first
    broadcasts {"build": True}; if produce returns without building (cached, or another process
    built it meanwhile) or fails before building, rank 0 broadcasts that instead. After a build,
    a final phase reports rank 0's commit (or its failure) to every rank."""
    if not ctx.distributed:
        return store.produce(kind, params, parents, build, schema_version=schema_version, step_version=step_version)
    mine = store.key_for(kind, params, parents, schema_version=schema_version, step_version=step_version)
    key = agree(mine, f"{kind} key", ctx)
    if ctx.is_main:
        started = {"yes": False}

        def main_build(bctx) -> None:
            started["yes"] = True
            broadcast_object({"build": True}, ctx)
            build(bctx)

        err: BaseException | None = None
        try:
            art, cached = store.produce(kind, params, parents, main_build, schema_version=schema_version,
                                        step_version=step_version)
        except BaseException as e:  # noqa: BLE001 - the other ranks must hear about it
            err = e
        if not started["yes"]:
            broadcast_object({"build": False, "error": describe(err) if err is not None else None}, ctx)
        elif not synced(err):
            run_phase(f"committing the {kind} artifact", _raiser(err), ctx)
        if err is not None:
            raise err
        return art, cached
    msg = broadcast_object(None, ctx)
    if not msg["build"]:
        if msg.get("error"):
            code, line = msg["error"]
            raise RankFailedError(f"rank 0 of {ctx.world_size} failed: {line}", None, exit_code=code)
        return store.get(key), True
    err = None
    try:
        build(None)
    except BaseException as e:  # noqa: BLE001 - rank 0 must hear about it, like the other way round
        if synced(e):
            raise
        err = e
    run_phase(f"committing the {kind} artifact", _raiser(err), ctx)
    return store.get(key), False


def _raiser(err: BaseException | None) -> Callable[[], None]:
    """A phase body that reports this rank's outcome: raise `err`, or nothing."""
    def outcome() -> None:
        if err is not None:
            raise err
    return outcome
