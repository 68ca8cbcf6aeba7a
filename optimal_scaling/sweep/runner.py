r"""One run of a sweep: build it from its config, train it, read it at every horizon.

    tokens per step  = batch_size · context
    horizon step     = D / (batch_size · context)            for every horizon D
    lr(step)         = lr_group · f(step)                     f: the schedule (below)

At each horizon the run records the validation loss on fixed batches (the same batches for
every run of every sweep with the same data, ``context`` and ``eval_*`` keys), the mean training
loss and tokens/s since the previous horizon, the training time so far, the learning rate, and
each layer group's largest weight norm in its natural norm (:class:`NormTracker` roles: input
ℓ1→RMS, hidden RMS→RMS, output RMS→∞, gains RMS), read exactly (SVD, not power iteration).
Then it writes a checkpoint (model, optimizer, data position, RNG states, rows) and its record.
Between horizons it also checkpoints at the first divergence check ``checkpoint_minutes`` after
the last checkpoint (with the losses and noise estimates since the horizon, so the row it
resumes into is the uninterrupted one): a killed or timed-out job loses at most that much.
That one goes to its own file, beside the last horizon's: a resume takes it unless the run now
asks for a horizon it has passed, or measures otherwise (``noise_scale``, ``log_every``); then
the horizon checkpoint, and the steps since are trained again. A checkpoint that cannot be read
(truncated, overwritten) is set aside as ``<name>.damaged-<time>``, never deleted, with a
warning in the record; the run resumes from its other checkpoint or from the start, and the
rows it read before stay in its record until it reads them again.

``noise_scale = true`` measures the gradient noise scale every step from the micro-batch
gradients (:class:`~optimal_scaling.batch_size.GradientNoiseProbe`; B_small = the micro-batch,
B_big = the whole batch): each horizon row gets ``gns_g2`` and ``gns_trace`` (the means of the
per-step unbiased estimates since the previous horizon) and ``b_simple`` = their ratio.
``log_every = k`` keeps a training log in the record, one entry per k steps: ``step``,
``tokens``, ``train_loss`` (the mean over those k steps) and, with the noise scale, ``gns_g2``
and ``gns_trace`` (means over the same steps). Neither changes what the run computes, so
neither is part of the run id. Both cost no extra host sync.

Schedules f(t), t = 0, 1, … the step index, T the steps to the run's horizon, W warmup steps:
``constant`` f = min(1, (t+1)/W); ``linear`` warmup, then 1 → final_fraction linearly at T;
``cosine`` warmup, then final + (1 − final)·½(1 + cos(π·progress)).

Divergence: a training loss that is not finite, or above ``blowup`` × the first step's loss,
checked every ``check_every`` steps (each check is one host sync) and at every horizon, ends
the run as ``diverged`` with the reason; it never raises.

Several processes (``resources.processes`` × ``resources.nodes``; torchrun or srun set
``RANK``/``WORLD_SIZE``): DDP over the ranks, each taking its slice of the same global batch
(so the run equals the one-process run up to float rounding), Muon and Scion with
``distributed=True`` (each rank orthogonalizes its share of the matrices). Rank 0 writes.

Run a single run by hand (this is what torchrun and the executors call)::

    python -m optimal_scaling.sweep.runner SWEEP_DIR RUN_ID
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import traceback
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from optimal_scaling.optim._checks import NonFiniteGradient
from optimal_scaling.results import atomic_write, machine
from optimal_scaling.sweep.store import (
    Lock,
    LockLost,
    read_config,
    read_json,
    read_record,
    remove_partial,
    run_dir,
    write_json,
)

__all__ = [
    "build_data",
    "build_model",
    "build_optimizer",
    "lr_factor",
    "train_run",
    "val_batches",
]

#: Seed of the validation batches: the same for every run, whatever its own seed.
VAL_SEED = 20_251_003


# --------------------------------------------------------------------------- building
@lru_cache(maxsize=4)
def _data(key: str):
    from optimal_scaling import data

    cfg = json.loads(key)
    source = cfg.pop("source")
    if source == "markov":
        return data.MarkovLanguage(**cfg)
    if source == "bytes":
        return data.byte_corpus(
            paths=cfg["paths"] or None,
            pattern=cfg["pattern"],
            max_bytes=cfg["max_bytes"] or None,
            val_fraction=cfg["val_fraction"],
            cache_dir=cfg["cache_dir"] or None,
        )
    return data.token_shards(cfg["folder"], vocab_size=cfg["vocab_size"] or None)


def build_data(data_cfg: dict):
    """The run's :class:`~optimal_scaling.data.TokenData` (built once per process and config)."""
    return _data(json.dumps(data_cfg, sort_keys=True))


def build_model(run: dict, vocab_size: int) -> nn.Module:
    """The run's model (on the CPU, initialized from ``run["seed"]``)."""
    from optimal_scaling.models import GPT

    torch.manual_seed(run["seed"])
    kwargs = {k: v for k, v in run["model"].items() if k != "name"}
    return GPT(vocab_size=vocab_size, context=run["context"], **kwargs)


def build_optimizer(run: dict, model: nn.Module, distributed: bool = False):
    """The run's optimizer over ``model`` (re-initializing it where the optimizer asks)."""
    from optimal_scaling.optim import Scion, muon_with_adamw, scion_groups
    from optimal_scaling.parametrization import Parametrization

    cfg = dict(run["optimizer"])
    name = cfg.pop("name")
    gen = torch.Generator().manual_seed(run["seed"])
    if name in ("adamw", "sgd"):
        width = getattr(model, "width", None)
        par = Parametrization(
            cfg["parametrization"],
            base_width=cfg["base_width"] or width,
            optimizer="adam" if name == "adamw" else "sgd",
        )
        par.apply(model, gen)  # re-applies the model's branch scaling itself
        groups = par.param_groups(
            model, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
            **({"eps": cfg["eps"]} if name == "adamw" else {}),
        )  # fmt: skip
        if name == "adamw":
            return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]))
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                               nesterov=cfg["nesterov"])  # fmt: skip
    if name == "muon":
        return muon_with_adamw(
            model, lr=cfg["lr"], adamw_lr=cfg["adamw_lr"], weight_decay=cfg["weight_decay"],
            betas=tuple(cfg["betas"]), momentum=cfg["momentum"], nesterov=cfg["nesterov"],
            steps=cfg["steps"], scale=cfg["scale"], distributed=distributed,
        )  # fmt: skip
    groups = scion_groups(model, preset=cfg["preset"], lr=cfg["lr"],
                          lr_multipliers=cfg["lr_multipliers"], radii=cfg["radii"],
                          spectral_method=cfg["spectral_method"])  # fmt: skip
    opt = Scion(groups, lr=cfg["lr"], momentum=cfg["momentum"], constrained=cfg["constrained"],
                weight_decay=cfg["weight_decay"], distributed=distributed)  # fmt: skip
    if cfg["init"]:
        opt.init(gen)
        _rescale_branches(model)
    return opt


def _rescale_branches(model: nn.Module) -> None:
    """A re-initialized GPT gets its 1/√(2L) branch scaling back (if its config asks)."""
    if hasattr(model, "scale_branch_init"):
        model.scale_branch_init()


def lr_factor(schedule: dict, step: int, total: int) -> float:
    """The schedule's multiplier f at step index ``step`` (0-based) of ``total`` steps."""
    warm, final = schedule["warmup_steps"], schedule["final_fraction"]
    if warm and step < warm:
        return (step + 1) / warm
    if schedule["name"] == "constant":
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if schedule["name"] == "linear":
        return 1.0 - (1.0 - final) * progress
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def val_batches(run: dict, data) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation batches (seeded by :data:`VAL_SEED`, not by the run)."""
    gen = torch.Generator().manual_seed(VAL_SEED)
    size, n = run["eval_batch_size"], run["eval_batches"]
    return [data.batch("val", size, run["context"], gen) for _ in range(n)]


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(),
                           targets.reshape(-1))  # fmt: skip


def _device(run: dict, local_rank: int, given: str | None) -> torch.device:
    from optimal_scaling.config import device as default_device

    if given:
        return torch.device(given)
    if run["device"] == "auto":
        dev = default_device()
        if dev.type != "cuda":
            return dev
        # one process: the GPU the environment names (OPTIMAL_SCALING_DEVICE=cuda:1); under
        # torch.distributed, one GPU per process by local rank
        if dev.index is not None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return dev
        return _local_gpu(local_rank)
    if run["device"] == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("run.device = 'cuda' but no CUDA device is available here")
        return _local_gpu(local_rank)
    return torch.device(run["device"])


def _local_gpu(local_rank: int) -> torch.device:
    """This process's GPU: one per process on a node."""
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"process {local_rank} of this node needs GPU {local_rank}, but it has "
                           f"{torch.cuda.device_count()}: set resources.processes to at most "
                           "the GPUs per node, or run.device = 'cpu'")  # fmt: skip
    return torch.device("cuda", local_rank)


def _measures(run: dict) -> list:
    """What a run records besides its rows: a between-horizons checkpoint holds partial
    windows of these, so it only resumes a run that measures the same."""
    return [bool(run["noise_scale"]), int(run["log_every"])]


def _resume_state(mid: Path, horizon: Path, device: torch.device, run: dict,
                  horizons: list[int], tps: int, owner: bool = True,
                  notes: list[str] | None = None) -> dict | None:  # fmt: skip
    """The checkpoint to resume from: the between-horizons one when it is still valid (every
    horizon the run asks for up to its step was read on the way, and it measures the same),
    else the last horizon's (the ``owner``, rank 0, deletes the invalid one; every rank reads
    the same files and decides the same); None to start afresh. A damaged checkpoint is set
    aside (:func:`_load_checkpoint`), with a line in ``notes``."""
    notes = [] if notes is None else notes
    state = _load_checkpoint(mid, device, owner, notes)
    if state is not None:
        read = {row["horizon"] for row in state["rows"]}
        passed = [h for h in horizons if h // tps <= state["step"] and h not in read]
        if not passed and state.get("measures") == _measures(run):
            return state
        if owner:
            mid.unlink(missing_ok=True)
    return _load_checkpoint(horizon, device, owner, notes)


def _load_checkpoint(path: Path, device: torch.device, owner: bool,
                     notes: list[str]) -> dict | None:  # fmt: skip
    """The checkpoint at ``path``, or None when there is none or it cannot be read.

    A damaged one (truncated, overwritten: torch says so as a zip, pickle, EOF or OS error) is
    renamed ``<name>.damaged-<time>`` by the ``owner``, never deleted, and noted for the
    record; the run goes on from its other checkpoint or from scratch. Nothing finished is
    lost: the rows it read stay in the record until the run reads them again, and the file
    stays for a look (rename it back to resume from it)."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)  # our own file
        if isinstance(state, dict) and {"step", "rows"} <= state.keys():
            return state
        why = "it holds no checkpoint"
    except FileNotFoundError:  # none (or another rank set it aside first)
        return None
    except (MemoryError, torch.cuda.OutOfMemoryError, PermissionError):
        raise  # this machine's limits, not a damaged file
    except Exception as exc:  # noqa: BLE001 - see above: a damaged file raises many kinds
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    if owner:
        try:
            path.rename(aside)
        except OSError as exc:
            raise RuntimeError(f"{path} cannot be read ({why}) and cannot be set aside "
                               f"({exc}); move it away to train the run again") from None
    notes.append(f"{path} could not be read ({why}); set aside as {aside.name}")
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- training
def train_run(
    sweep_dir: str | Path,
    rid: str,
    *,
    device: str | None = None,
    lock: bool = True,
) -> str:
    """Train run ``rid`` of the sweep in ``sweep_dir`` to its last horizon; return its status.

    Resumes from the run's checkpoint when there is one. Returns ``"done"``, ``"diverged"``,
    ``"running"`` (another process holds the run: nothing done, or it took the run over from
    this one, which stops and leaves the recording to it) or ``"failed"`` (an error,
    recorded in the run's record; KeyboardInterrupt is re-raised after releasing the lock).
    Under torch.distributed every rank calls this; rank 0 takes the lock and writes.
    """
    folder = run_dir(Path(sweep_dir), rid)
    spec = read_config(folder)
    if spec is None:
        raise FileNotFoundError(f"{folder}: no config.json; is {rid!r} a run of this sweep?")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():  # NCCL for CUDA runs, gloo for CPU ones
        dev = _device(spec["run"], int(os.environ.get("LOCAL_RANK", "0")), device)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    claim = Lock(folder)
    try:
        go = [claim.acquire() if rank == 0 and lock else True]
        if world > 1:
            dist.broadcast_object_list(go, src=0)
        if not go[0]:
            return "running"
        if rank == 0:
            remove_partial(folder)  # a killed predecessor's unfinished writes
        return _train(folder, spec, rank, world, device, claim if rank == 0 else None)
    except LockLost as exc:  # another process trains this run now: it records, not we
        print(f"run {rid}: stopped, {exc}", file=sys.stderr)
        return "running"
    # A broken run is recorded and never stops the sweep; KeyboardInterrupt and SystemExit
    # pass through (the lock is still released).
    except Exception as exc:
        if rank == 0:
            error = f"{type(exc).__name__}: {exc}"
            if type(exc).__name__ == "UncompletedJobError":  # submitit's, at the last timeout
                error = ("the SLURM task reached its time limit more than slurm.max_requeues "
                         "times; `optimal-scaling sweep run` again resumes the run from its "
                         f"last checkpoint ({exc})")  # fmt: skip
            try:
                record = read_json(folder / "record.json") or {}
                record.update(status="failed", error=error,
                              traceback=traceback.format_exc(limit=8))  # fmt: skip
                write_json(folder / "record.json", record)
            except (OSError, ValueError) as also:  # e.g. a read-only or full run folder
                print(f"run {folder.name} failed ({type(exc).__name__}: {exc}), and its "
                      f"failure could not be recorded ({type(also).__name__}: {also})",
                      file=sys.stderr)  # fmt: skip
        return "failed"
    finally:
        claim.release()


def _train(folder: Path, spec: dict, rank: int, world: int, given: str | None,
           claim: Lock | None) -> str:  # fmt: skip
    from torch.nn.parallel import DistributedDataParallel

    from optimal_scaling.tracking import NormTracker

    run, horizons = spec["run"], spec["horizons"]
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(run, local_rank, given)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    data = build_data(run["data"])
    B, T = run["batch_size"], run["context"]
    tps = B * T
    targets = {h // tps: h for h in horizons}
    last = horizons[-1] // tps
    total = run.get("horizon", horizons[-1]) // tps  # a decaying schedule ends at its horizon

    model = build_model(run, data.vocab_size)
    sizes = {}  # N for scaling laws: all parameters, and without the embedding tables
    if hasattr(model, "num_params"):
        sizes = {"params": model.num_params(),
                 "params_non_embedding": model.num_params(non_embedding=True)}  # fmt: skip
    dtype = torch.float64 if run["dtype"] == "float64" else torch.float32
    model.to(device=device, dtype=dtype)
    opt = build_optimizer(run, model, distributed=world > 1)
    base_lrs = [g["lr"] for g in opt.param_groups]
    tracker = NormTracker(model, every=10**9)
    gen = torch.Generator().manual_seed(run["seed"] + 1)

    ckpt_path, rec_path = folder / "checkpoint.pt", folder / "record.json"
    mid_path = folder / "checkpoint_mid.pt"  # between horizons (checkpoint_minutes)
    record = read_record(folder)
    # without a checkpoint (or with damaged ones) the run starts afresh; the rows it read before
    # stay in its record until it reads those horizons again
    step, rows, first, seconds = 0, list(record.get("rows", [])), None, 0.0
    log: dict[str, list] = {"step": [], "tokens": [], "train_loss": []}
    log_window: tuple[list, list] = ([], [])
    window: list[torch.Tensor] = []  # each step's training loss since the last horizon
    noise: list[torch.Tensor] = []  # the probe's [‖G‖², tr Σ] of each step since the horizon
    window_seconds = 0.0  # training time since the last horizon, before this start
    notes: list[str] = []  # damaged checkpoints set aside
    state = _resume_state(mid_path, ckpt_path, device, run, horizons, tps, owner=rank == 0,
                          notes=notes)  # fmt: skip
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, rows, first, seconds = state["step"], state["rows"], state["first"], state["seconds"]
        log = state.get("log", log)
        log_window = state.get("log_window", log_window)
        window = list(state.get("window", torch.zeros(0, dtype=torch.float64)).to(device))
        noise = list(state.get("noise", torch.zeros(0, 2)).to(device))
        window_seconds = state.get("window_seconds", 0.0)
    if step >= last:  # already read at every horizon (an extension adds horizons)
        if rank == 0:
            record.update(status="done", rows=rows)
            write_json(rec_path, record)
        return "done"
    if rank == 0:
        starts = record.get("starts", [])
        starts.append({"from_step": step, "host": socket.gethostname(), "time": time.time(),
                       "world": world, "device": str(device), "torch": torch.__version__,
                       "machine": machine(str(device))})  # fmt: skip
        record.update(id=folder.name, status="running", rows=rows, starts=starts,
                      trainings=len(starts), reason="", error="")  # fmt: skip
        for note in notes:
            print(f"run {folder.name}: {note}; training from step {step}", file=sys.stderr)
            record.setdefault("warnings", []).append(f"{time.strftime('%Y-%m-%d %H:%M')}: "
                                                     f"{note}; trained again from step {step}")
        record.pop("traceback", None)
        write_json(rec_path, record)

    net: nn.Module = DistributedDataParallel(model) if world > 1 else model
    if run["compile"]:
        net = torch.compile(net)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if run["dtype"] == "bfloat16" else nullcontext())  # fmt: skip
    val = val_batches(run, data)
    share = B // world
    micro = run["micro_batch_size"] or share
    probe = None
    if run["noise_scale"]:
        from optimal_scaling.batch_size import GradientNoiseProbe

        probe = GradientNoiseProbe(model.parameters(), micro, B, world)
    every = run["log_every"]
    log_loss, log_noise = log_window  # the steps since the last log entry
    pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # entries not yet read

    def evaluate() -> float:  # the plain model: no DDP sync, no recompile for eval shapes
        model.eval()
        with torch.no_grad(), autocast:
            total_loss = sum(_loss(model(x.to(device)), y.to(device)).item() for x, y in val)
        model.train()
        return total_loss / len(val)

    def save(mid_horizon: bool) -> None:  # rank 0: the state a resume continues from
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "data_rng": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step, "rows": rows, "first": first, "seconds": seconds,
            "log": log, "log_window": (log_loss, log_noise),
        }  # fmt: skip
        if mid_horizon:
            state.update(window=torch.stack(window).cpu(),
                         noise=torch.stack(noise).cpu() if noise else torch.zeros(0, 2),
                         window_seconds=time.perf_counter() - tick,
                         measures=_measures(run))  # fmt: skip
        atomic_write(mid_path if mid_horizon else ckpt_path, lambda f: torch.save(state, f))
        if not mid_horizon:  # the horizon checkpoint supersedes any between-horizons one
            mid_path.unlink(missing_ok=True)

    every_s = 60.0 * run.get("checkpoint_minutes", 0.0)
    checked = len(window)  # restored losses were checked before they were saved
    _sync(device)
    tick = time.perf_counter() - window_seconds  # this row's rate and time exclude the restart
    saved = touched = time.perf_counter()
    lost = False  # rank 0 found its lock taken over: every rank stops at the next check
    net.train()
    def flush() -> None:
        """Move the logged means into ``log`` (read where a check syncs anyway)."""
        for at, mean_loss, mean_noise in pending:
            log["step"].append(at)
            log["tokens"].append(at * tps)
            log["train_loss"].append(float(mean_loss))
            if mean_noise is not None or "gns_g2" in log:  # NaN where it was not measured
                g2, trace = (mean_noise.tolist() if mean_noise is not None
                             else (math.nan, math.nan))  # fmt: skip
                for key, value in (("gns_g2", g2), ("gns_trace", trace)):
                    column = log.setdefault(key, [])  # switched on at a resume: pad first
                    column.extend([math.nan] * (len(log["step"]) - 1 - len(column)))
                    column.append(value)
        pending.clear()

    def diverged(why: str) -> str:
        flush()  # the steps up to the divergence belong to its log
        rows[:] = [r for r in rows if r["horizon"] <= step * tps]  # none kept from before
        if rank == 0:
            record.update(status="diverged", rows=rows, reason=why)
            if every:
                record.update(log=log, sizes=sizes)
            write_json(rec_path, record)
            ckpt_path.unlink(missing_ok=True)
            mid_path.unlink(missing_ok=True)
        return "diverged"

    while step < last:
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * lr_factor(run["schedule"], step, total)
        x, y = data.batch("train", B, T, gen)
        x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        for i in range(0, share, micro):
            last_micro = i + micro >= share
            sync = world > 1 and last_micro and probe is None  # the probe reduces itself
            ctx = net.no_sync() if world > 1 and not sync else nullcontext()
            with ctx, autocast:
                loss = _loss(net(x[i : i + micro].to(device)), y[i : i + micro].to(device))
                (loss * (micro / share)).backward()
            loss_sum += loss.detach().double() * (micro / share)
            if probe is not None:
                probe.after_backward()
        if probe is not None:
            noise.append(probe.finish())
        try:
            opt.step()
        except NonFiniteGradient as err:  # the optimizer's CPU check: the loss check is later
            return diverged(f"at step {step + 1}: non-finite gradient ({err})")
        opt.zero_grad(set_to_none=True)
        step += 1
        if claim is not None and not lost and time.perf_counter() - touched >= 60:
            try:  # alive, as other hosts see it (by the clock: a step can take minutes)
                claim.touch()
            except LockLost:
                lost = True
            touched = time.perf_counter()
        if world > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= world
        window.append(loss_sum)
        if every:
            log_loss.append(loss_sum)
            if probe is not None:
                log_noise.append(noise[-1])
            if step % every == 0:
                pending.append((step, torch.stack(log_loss).mean(),
                                torch.stack(log_noise).mean(0) if log_noise else None))
                log_loss, log_noise = [], []
        if step % run["check_every"] == 0 or step in targets or step == last:
            if world > 1:  # the ranks stop together (one leaving alone hangs the others)
                agreed = [lost]
                dist.broadcast_object_list(agreed, src=0)
                lost = agreed[0]
            if lost:  # before anything is written: the run belongs to another process now
                raise LockLost(f"{folder}: the run's lock was taken over by another process")
            flush()
            values = torch.stack(window[checked:]).tolist()
            checked = len(window)
            if first is None:
                first = values[0]
            bad = next((v for v in values if not math.isfinite(v) or v > run["blowup"] * first),
                       None)  # fmt: skip
            if bad is not None:
                why = ("non-finite loss" if not math.isfinite(bad)
                       else f"loss {bad:.3g} > {run['blowup']:g} × first loss {first:.3g}")
                return diverged(f"by step {step}: {why}")
            if (rank == 0 and every_s and step not in targets
                    and time.perf_counter() - saved >= every_s):
                save(mid_horizon=True)
                saved = time.perf_counter()
        if step in targets:
            _sync(device)
            now = time.perf_counter()
            seconds += now - tick
            row = {
                "horizon": targets[step],
                "step": step,
                "tokens": step * tps,
                "val_loss": evaluate(),
                "train_loss": float(torch.stack(window).mean()),
                "tokens_per_s": len(window) * tps / max(now - tick, 1e-9),
                "seconds": seconds,
                "lr": opt.param_groups[0]["lr"],
                **sizes,
            }
            row.update({f"norm[{k[2:-1]}]": v for k, v in tracker.group_norms().items()})
            if noise:
                g2, trace = torch.stack(noise).mean(0).tolist()
                row.update(gns_g2=g2, gns_trace=trace,
                           b_simple=trace / g2 if g2 > 0 else math.inf)  # fmt: skip
            rows[:] = [r for r in rows if r["horizon"] != row["horizon"]] + [row]  # read again
            rows.sort(key=lambda r: r["horizon"])
            if rank == 0:
                save(mid_horizon=False)
                saved = time.perf_counter()
                record.update(rows=rows, status="done" if step == last else "running")
                if every:
                    record.update(log=log, sizes=sizes)
                write_json(rec_path, record)
            window, checked, noise = [], 0, []
            _sync(device)
            tick = time.perf_counter()
    return "done"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m optimal_scaling.sweep.runner SWEEP_DIR RUN_ID", file=sys.stderr)
        return 2
    # torchrun's ranks: the launching worker holds the run's lock for them
    status = train_run(args[0], args[1], lock=int(os.environ.get("WORLD_SIZE", "1")) == 1)
    if dist.is_initialized():
        dist.destroy_process_group()
    print(f"run {args[1]}: {status}", flush=True)
    return 0 if status in ("done", "diverged", "running") else 1


if __name__ == "__main__":
    sys.exit(main())
