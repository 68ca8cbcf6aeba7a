r"""A sweep, written down: a base run, grid axes over its keys, token horizons, and resources.

A sweep file (TOML) looks like this::

    name = "ci"
    horizons = { start = "2^11", stop = "2^13", factor = 2 }   # tokens D; or a list

    [run]                          # the base run: every key has a default (RUN_DEFAULTS)
    batch_size = 8                 # sequences per optimizer step
    context = 32
    [run.model]                    # GPT knobs (optimal_scaling.models.GPT)
    width = 32
    [run.data]                     # markov | bytes | shards, and that source's arguments
    source = "markov"
    [run.optimizer]                # adamw | sgd | muon | scion, and that optimizer's keys
    name = "scion"
    lr = 0.01
    [run.schedule]                 # constant | cosine | linear (+ warmup_steps, final_fraction)
    name = "constant"

    [grid]                         # axes over any key of [run], by its dotted path
    "optimizer.lr" = { start = "2^-8", stop = "2^0", factor = "2^0.5" }
    batch_size = [4, 8]

    [resources]                    # per run: processes (one per GPU) and nodes
    [local]                        # the local executor: workers, threads per worker
    [slurm]                        # the SLURM executor (submitit): partition, time, ...

Values may be written ``"2^k"`` (also ``"2**k"``) anywhere a number goes. The grid is the
Cartesian product of its axes, in file order. A run with a constant schedule trains once to
the largest horizon and is read at every horizon it passes; a run with a decaying schedule
(cosine, linear) is a different run per horizon, so ``horizon`` becomes one more axis.

Every run gets a stable id: the first 12 hex digits of the SHA-256 of its resolved config
(canonical JSON; the keys of :data:`NOT_IN_ID`, which do not change the numbers, left out).
The same config gives the same id on any machine, so a sweep never trains a run twice, and a
constant-schedule run can be extended to a longer horizon from its last checkpoint.

Everything is checked before anything runs: an unknown key, a wrong type, an empty axis or an
impossible combination (a horizon that is not a whole number of steps, a batch that does not
split over the processes, a model that cannot be built: more than :data:`MAX_PARAMS`
parameters) or size (more than :data:`MAX_RUNS` runs, a horizon of 2^53 tokens or more, data
held in memory beyond :data:`MAX_HOST_BYTES`) raises :class:`ConfigError` naming the key and
the file.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import math
import numbers
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "Run",
    "Sweep",
    "expand",
    "geometric",
    "load",
    "run_id",
]

ROLES = ("input", "hidden", "output", "gain", "bias")

#: Keys of the run that change how it runs, not what it computes: left out of the run id.
NOT_IN_ID = ("device", "compile", "noise_scale", "log_every", "checkpoint_minutes")

#: The base run. Every key a sweep may set, with its default (whose type is the key's type).
RUN_DEFAULTS: dict[str, Any] = {
    "seed": 0,  # model init and data order
    "batch_size": 16,  # sequences per optimizer step (over all processes)
    "micro_batch_size": 0,  # sequences per forward/backward on one process; 0: all at once
    "context": 64,  # tokens per sequence
    "dtype": "float32",  # float32 | bfloat16 (autocast) | float64
    "device": "auto",  # auto (cuda > mps > cpu) | cpu | cuda | mps
    "compile": False,  # torch.compile the model
    "blowup": 4.0,  # a loss above blowup × the first loss ends the run as diverged
    "check_every": 10,  # steps between divergence checks (one host sync each)
    "eval_batches": 8,  # fixed validation batches read at every horizon
    "eval_batch_size": 16,
    "noise_scale": False,  # measure the gradient noise scale each step (from micro-batches)
    "log_every": 0,  # steps per entry of the training log (train loss, noise scale); 0: none
    "checkpoint_minutes": 10.0,  # also checkpoint between horizons this often; 0: horizons only
    "model": {"name": "gpt"},  # + the knobs of optimal_scaling.models.GPT
    "data": {"source": "markov"},  # + the arguments of that source
    "optimizer": {"name": "adamw"},  # + the keys of that optimizer (OPTIMIZERS)
    "schedule": {"name": "constant", "warmup_steps": 0, "final_fraction": 0.0},
}

DTYPES = ("float32", "bfloat16", "float64")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("constant", "cosine", "linear")

#: Each optimizer's keys and defaults (see optimal_scaling.sweep.runner.build_optimizer).
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adamw": {
        "lr": 1e-3,
        "betas": [0.9, 0.95],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "parametrization": "sp",
        "base_width": 0,  # 0: the model's own width
    },
    "sgd": {
        "lr": 0.1,
        "momentum": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "parametrization": "sp",
        "base_width": 0,
    },
    "muon": {  # Muon on hidden matrices, AdamW on the rest (muon_with_adamw)
        "lr": 0.02,
        "adamw_lr": 3e-4,
        "momentum": 0.95,
        "nesterov": True,
        "steps": 5,
        "scale": "max1",
        "weight_decay": 0.0,
        "betas": [0.9, 0.95],
    },
    "scion": {  # the norm-transfer setting by default: no momentum, ColNorm→Spectral→RowNorm
        "lr": 0.01,
        "momentum": 1.0,
        "preset": "colnorm-spectral-rownorm",
        "constrained": False,
        "weight_decay": 0.0,  # decoupled: x ← (1 − γλ)·x + γρ·lmo(d)
        "spectral_method": "newton_schulz",  # 8 Polar Express steps | muon (5 steps) | svd
        "lr_multipliers": {role: 1.0 for role in ROLES},
        "radii": {role: 1.0 for role in ROLES},
        "init": True,  # norm-matched init (Scion.init)
    },
}

_RESOURCE_DEFAULTS: dict[str, Any] = {"processes": 1, "nodes": 1}
_LOCAL_DEFAULTS: dict[str, Any] = {"workers": 1, "threads": 0}  # threads 0: cores // workers
_SLURM_DEFAULTS: dict[str, Any] = {
    "cluster": "slurm",  # slurm | local | debug (submitit's executors; local runs here)
    "partition": "",
    "account": "",
    "qos": "",
    "time_min": 60,  # per array task (≥ 3); a timed-out task is requeued and resumes
    "max_requeues": 20,  # timeouts per task (preemptions: always); then `sweep run` again
    "array_parallelism": 64,
    "cpus_per_task": 4,
    "mem_gb": 0,  # 0: the partition's default
    "gpus": True,  # one GPU per process
    "setup": [],  # shell lines before srun (module load ..., source venv/bin/activate)
    "additional": {},  # any other #SBATCH option, e.g. {constraint = "h100"}
}

#: At most this many runs in a sweep (and values in one range, and horizons): a SLURM job array
#: holds at most MaxArraySize tasks (1001 by default, some 10^4 on large clusters), and checking
#: a grid point takes about a millisecond; a larger grid is a typo (a range by factor 1.00001).
MAX_RUNS = 10_000

#: Horizons stay below 2^53 tokens: the collected tables store them as float64, which holds
#: every integer exactly only up to 2^53 (9.0e15 tokens, hundreds of times the largest datasets).
MAX_TOKENS = 2**53

#: At most 10^13 parameters (40 TB of float32 weights, some ten times the largest dense models
#: trained): a larger model is a typo (width = 1e300), and below it every tensor's size fits,
#: far inside, the int64 shapes torch uses.
MAX_PARAMS = 10**13

#: At most 256 GiB of data held in host memory by one run: the Markov stream (uint16 ids) and
#: the fixed validation batches (int64 inputs and targets). More than a large compute node
#: has, so a larger value is a typo that would otherwise hang or exhaust memory at the start.
MAX_HOST_BYTES = 2**38

_TOP_KEYS = ("name", "description", "horizons", "run", "grid", "resources", "local", "slurm")


class ConfigError(ValueError):
    """A sweep config that cannot run; the message names the key and the file."""


def _err(where: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {message}")


# --------------------------------------------------------------------------- values
_POW = re.compile(r"^\s*([0-9.eE+-]+)\s*(?:\^|\*\*)\s*([0-9.eE+-]+)\s*$")


def number(value: object, where: str, key: str) -> float | int:
    """A number from TOML: int, float, or a string ``"2^k"`` / ``"2**k"`` / ``"1e-3"``."""
    if isinstance(value, bool):
        raise _err(where, key, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        m = _POW.match(value)
        bad_base = False
        try:
            if not m:
                return float(value)
            base, exp = float(m.group(1)), float(m.group(2))
            bad_base = m.group(1).lstrip().startswith("-") or (base == 0 and exp < 0)
            out = math.nan if bad_base else base**exp  # a negative base: (-2)^-8 or complex
            if math.isfinite(out):
                return int(out) if out.is_integer() and exp >= 0 and base.is_integer() else out
        except ValueError:
            pass
        except OverflowError:  # 2^2000: a number, but beyond floats
            raise _err(where, key, f"{value!r} overflows (a number or 'b^k' must stay below "
                       f"{sys.float_info.max:.3g})") from None  # fmt: skip
        if bad_base:
            raise _err(where, key, f"'b^k' needs b ≥ 0 (and b > 0 for k < 0), got {value!r}")
    raise _err(where, key, f"expected a number or 'b^k', got {value!r}")


def geometric(start: float, stop: float, factor: float) -> list[float]:
    """start, start·factor, … up to stop (inclusive), computed in logs (2^k stay exact).

    Each must be a finite number, with start > 0, stop ≥ start and factor > 1, and the range at
    most :data:`MAX_RUNS` values long (counted from the logs before any value is made); else a
    ValueError naming the argument."""
    for name, v in (("start", start), ("stop", stop), ("factor", factor)):
        if not _finite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if start <= 0:
        raise ValueError(f"start must be > 0, got {start}")
    if stop < start:
        raise ValueError(f"stop {stop} is below start {start}")
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    a, r = math.log2(start), math.log2(factor)
    n = math.floor((math.log2(stop) - a) / r + 1e-9)
    if n + 1 > MAX_RUNS:
        raise ValueError(f"{start} to {stop} by factor {factor} is {n + 1:,} values; at most "
                         f"{MAX_RUNS:,} (use a larger factor)")  # fmt: skip
    values = [2.0 ** (a + k * r) for k in range(n + 1)]
    return [round(v) if v >= 0.5 and abs(v - round(v)) < 1e-9 * v else v for v in values]


def _finite(value: object) -> bool:
    try:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value))  # fmt: skip
    except OverflowError:  # an int beyond floats
        return False


def _big(n: int) -> str:
    """A count of any size, short: 123,456, 1.23e+45 or (beyond floats) about 2^k."""
    if n < 10**6:
        return f"{n:,}"
    return f"{float(n):.3g}" if n.bit_length() <= 1000 else f"about 2^{n.bit_length() - 1}"


def _axis_values(raw: object, where: str, key: str) -> list:
    if isinstance(raw, list):
        if not raw:
            raise _err(where, key, "the axis is empty")
        return list(raw)
    if isinstance(raw, Mapping):
        extra = set(raw) - {"start", "stop", "factor"}
        if extra or len(raw) != 3:
            raise _err(
                where, key, "a range is {start = ..., stop = ..., factor = ...}; got keys "
                f"{sorted(raw)}"
            )  # fmt: skip
        s, e, f = (number(raw[k], where, f"{key}.{k}") for k in ("start", "stop", "factor"))
        try:
            return geometric(s, e, f)
        except ValueError as exc:
            raise _err(where, key, str(exc)) from None
    raise _err(where, key, f"expected a list of values or a range table, got {raw!r}")


def _check_value(value: object, default: object, where: str, key: str) -> object:
    """``value`` converted to the type of ``default``, or a ConfigError naming ``key``."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _err(where, key, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        v = number(value, where, key)
        if isinstance(v, float) and not v.is_integer():
            raise _err(where, key, f"expected an integer, got {value!r}")
        return int(v)
    if isinstance(default, float):
        v = number(value, where, key)
        if not math.isfinite(v):
            raise _err(where, key, f"expected a finite number, got {value!r}")
        return float(v)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _err(where, key, f"expected a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise _err(where, key, f"expected a list, got {value!r}")
        if default and len(value) != len(default) and not isinstance(default[0], str):
            raise _err(where, key, f"expected {len(default)} values, got {value!r}")
        if default:
            return [_check_value(v, default[0], where, f"{key}[{i}]") for i, v in enumerate(value)]
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise _err(where, key, f"expected a table, got {value!r}")
        if not default:  # free-form table (e.g. extra #SBATCH options)
            return dict(value)
        out = dict(default)
        for k, v in value.items():
            if k not in default:
                raise _err(where, f"{key}.{k}", f"unknown key; known: {', '.join(default)}")
            out[k] = _check_value(v, default[k], where, f"{key}.{k}")
        return out
    if default is None:
        return value
    raise TypeError(f"no type rule for the default {default!r} of {key}")  # pragma: no cover


def _choice(value: object, choices: Iterable[str], where: str, key: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise _err(where, key, f"unknown option {value!r}; choose from {', '.join(choices)}")
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------- sections
def _signature_defaults(fn: Any, skip: Iterable[str]) -> dict[str, Any]:
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name == "self":
            continue
        out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def model_defaults(name: str) -> dict[str, Any]:
    """The keys of ``[run.model]`` for model ``name`` with their defaults."""
    from optimal_scaling.models import GPT

    if name != "gpt":
        raise ValueError(f"unknown model {name!r}; choose from gpt")
    return {"name": "gpt", **_signature_defaults(GPT.__init__, ("vocab_size", "context"))}


def data_defaults(source: str) -> dict[str, Any]:
    """The keys of ``[run.data]`` for ``source`` (markov, bytes, shards) with their defaults."""
    from optimal_scaling import data

    builders = {"markov": data.MarkovLanguage, "bytes": data.byte_corpus,
                "shards": data.token_shards}  # fmt: skip
    if source not in builders:
        raise ValueError(f"unknown data source {source!r}; choose from {', '.join(builders)}")
    fn = builders[source]
    defaults = _signature_defaults(fn.__init__ if isinstance(fn, type) else fn, ())
    if source == "bytes":  # TOML has no None: "" means the default (the stdlib sources)
        defaults.update(paths="", max_bytes=0, cache_dir="")
    if source == "shards":
        defaults.update(folder="", vocab_size=0)
    return {"source": source, **defaults}


def _section(value: object, defaults: dict, where: str, key: str) -> dict:
    return _check_value(value, defaults, where, key)  # type: ignore[return-value]


def resolve_run(raw: Mapping, where: str) -> dict:
    """The base run with every default filled in and every key and type checked."""
    if not isinstance(raw, Mapping):
        raise _err(where, "run", f"expected a table, got {raw!r}")
    run = copy.deepcopy(RUN_DEFAULTS)
    for key, value in raw.items():
        if key not in RUN_DEFAULTS:
            raise _err(where, f"run.{key}", f"unknown key; known: {', '.join(RUN_DEFAULTS)}")
        if key in ("model", "data", "optimizer", "schedule"):
            continue
        run[key] = _check_value(value, RUN_DEFAULTS[key], where, f"run.{key}")
    _choice(run["dtype"], DTYPES, where, "run.dtype")
    _choice(run["device"], DEVICES, where, "run.device")

    for section in ("model", "data", "optimizer", "schedule"):
        if not isinstance(raw.get(section, {}), dict):
            raise _err(where, f"run.{section}", f"must be a table ([run.{section}] or "
                       f"{section} = {{ ... }}), got {raw[section]!r}")  # fmt: skip
    model = dict(raw.get("model", {}))
    name = _choice(model.get("name", "gpt"), ("gpt",), where, "run.model.name")
    run["model"] = _section(model, model_defaults(name), where, "run.model")
    data = dict(raw.get("data", {}))
    source = _choice(data.get("source", "markov"), ("markov", "bytes", "shards"), where,
                     "run.data.source")  # fmt: skip
    run["data"] = _section(data, data_defaults(source), where, "run.data")
    if source == "shards" and not run["data"]["folder"]:
        raise _err(where, "run.data.folder", "the shards source needs a folder")
    opt = dict(raw.get("optimizer", {}))
    oname = _choice(opt.get("name", "adamw"), OPTIMIZERS, where, "run.optimizer.name")
    run["optimizer"] = _section(opt, {"name": oname, **OPTIMIZERS[oname]}, where,
                                "run.optimizer")  # fmt: skip
    run["schedule"] = _section(raw.get("schedule", {}), RUN_DEFAULTS["schedule"], where,
                               "run.schedule")  # fmt: skip
    _choice(run["schedule"]["name"], SCHEDULES, where, "run.schedule.name")
    if oname == "scion":
        from optimal_scaling.duality import SPECTRAL_METHODS

        _choice(run["optimizer"]["spectral_method"], SPECTRAL_METHODS, where,
                "run.optimizer.spectral_method")  # fmt: skip
    return run


# --------------------------------------------------------------------------- paths
def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"optimizer": {"lr": 1}}`` → ``{"optimizer.lr": 1}`` (lists kept as values)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _apply(raw_run: dict, path: str, value: object, where: str, what: str) -> dict:
    """The raw run table with ``path`` set to ``value`` (checked as part of a full resolve)."""
    parts = path.split(".")
    tree = copy.deepcopy(raw_run)
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise _err(where, what, f"{part!r} is not a table")
    node[parts[-1]] = value
    return tree


# --------------------------------------------------------------------------- runs
def run_id(run: Mapping) -> str:
    """12 hex digits of the SHA-256 of the run's canonical JSON (without :data:`NOT_IN_ID`)."""
    kept = {k: v for k, v in run.items() if k not in NOT_IN_ID}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def decays(run: Mapping) -> bool:
    """Whether the run's learning rate decays (then it is one run per horizon)."""
    return run["schedule"]["name"] != "constant"


@dataclass
class Run:
    """One grid point: its id, resolved config, the grid values that made it, its horizons."""

    id: str
    config: dict
    point: dict
    horizons: list[int]

    @property
    def tokens_per_step(self) -> int:
        return self.config["batch_size"] * self.config["context"]

    @property
    def steps(self) -> int:
        """Optimizer steps to the last horizon."""
        return self.horizons[-1] // self.tokens_per_step


@dataclass
class Sweep:
    """A parsed sweep: name, base run, grid axes, horizons, resources and executor settings."""

    name: str
    base: dict
    grid: dict[str, list]
    horizons: list[int]
    resources: dict = field(default_factory=lambda: dict(_RESOURCE_DEFAULTS))
    local: dict = field(default_factory=lambda: dict(_LOCAL_DEFAULTS))
    slurm: dict = field(default_factory=lambda: copy.deepcopy(_SLURM_DEFAULTS))
    description: str = ""
    source: str = "<python>"
    raw_run: dict = field(default_factory=dict)

    def runs(self) -> list[Run]:
        """Every run of the grid (checked), in grid order."""
        return expand(self)

    def to_dict(self) -> dict:
        """The sweep as plain data (what ``sweep.json`` in a sweep directory holds), such that
        ``from_dict(sweep.to_dict())`` gives the same runs: ``run`` is the table as written
        (after ``--set``), not the resolved base, whose defaults belong to the base optimizer
        and data source and would not fit a grid that varies ``optimizer.name`` or
        ``data.source``. Each run's resolved config is in its ``config.json``."""
        return {
            "name": self.name,
            "description": self.description,
            "horizons": self.horizons,
            "run": copy.deepcopy(self.raw_run),
            "grid": self.grid,
            "resources": self.resources,
            "local": self.local,
            "slurm": self.slurm,
        }


def _horizons(raw: object, where: str) -> list[int]:
    values = _axis_values(raw, where, "horizons")
    if len(values) > MAX_RUNS:
        raise _err(where, "horizons", f"{len(values):,} horizons; at most {MAX_RUNS:,}")
    out = []
    for i, v in enumerate(values):
        n = number(v, where, f"horizons[{i}]")
        if (isinstance(n, float) and not (math.isfinite(n) and n.is_integer())) or n < 1:
            raise _err(where, "horizons", f"token counts must be positive integers, got {v!r}")
        if n >= MAX_TOKENS:
            raise _err(where, f"horizons[{i}]", f"{_big(int(n))} tokens is not below 2^53 ≈ "
                       "9.0e15, the largest token count the collected tables (float64) hold "
                       "exactly")  # fmt: skip
        out.append(int(n))
    if sorted(set(out)) != out:
        raise _err(where, "horizons", f"must be increasing without repeats, got {out}")
    return out


def from_dict(raw: Mapping, source: str = "<python>") -> Sweep:
    """Build and check a sweep from a dict shaped like the TOML file."""
    where = source
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a sweep is a table, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise _err(where, key, f"unknown key; known: {', '.join(_TOP_KEYS)}")
    name = raw.get("name") or (Path(source).stem if source != "<python>" else "")
    if (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name or "")
            or name in (".", "..")):  # the sweep's folder under runs/: a plain folder name
        raise _err(where, "name", f"a sweep needs a name of letters, digits, _.- (a folder "
                   f"name, not . or ..); got {name!r}")  # fmt: skip
    if "horizons" not in raw:
        raise _err(where, "horizons", "missing: the token counts D at which runs are read")
    if not isinstance(raw.get("run", {}), Mapping):
        raise _err(where, "run", f"expected a table ([run]), got {raw['run']!r}")
    raw_run = copy.deepcopy(dict(raw.get("run", {})))
    base = resolve_run(raw_run, where)
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, Mapping):
        raise _err(where, "grid", f"expected a table of axes, got {grid_raw!r}")
    known = flatten(base)
    grid: dict[str, list] = {}
    for axis, values in grid_raw.items():
        if axis not in known and not _varies(grid_raw, axis):
            raise _err(where, f"grid.{axis}", "not a key of [run]; grid axes are dotted paths "
                       "such as optimizer.lr, batch_size, model.width, seed")  # fmt: skip
        grid[axis] = _axis_values(values, where, f"grid.{axis}")
    sweep = Sweep(
        name=name,
        base=base,
        grid=grid,
        horizons=_horizons(raw["horizons"], where),
        resources=_check_value(raw.get("resources", {}), _RESOURCE_DEFAULTS, where, "resources"),
        local=_check_value(raw.get("local", {}), _LOCAL_DEFAULTS, where, "local"),
        slurm=_check_value(raw.get("slurm", {}), _SLURM_DEFAULTS, where, "slurm"),
        description=_description(raw.get("description", ""), where),
        source=source,
        raw_run=raw_run,
    )
    _choice(sweep.slurm["cluster"], ("slurm", "local", "debug"), where, "slurm.cluster")
    for key in ("processes", "nodes"):
        if sweep.resources[key] < 1:
            raise _err(where, f"resources.{key}", f"must be ≥ 1, got {sweep.resources[key]}")
    if sweep.local["workers"] < 1:
        raise _err(where, "local.workers", f"must be ≥ 1, got {sweep.local['workers']}")
    if sweep.local["threads"] < 0:
        raise _err(where, "local.threads", f"must be ≥ 0 (0: cores // workers), got "
                   f"{sweep.local['threads']}")  # fmt: skip
    for key in ("array_parallelism", "cpus_per_task"):
        if sweep.slurm[key] < 1:
            raise _err(where, f"slurm.{key}", f"must be ≥ 1, got {sweep.slurm[key]}")
    if sweep.slurm["time_min"] < 3:  # submitit's requeue signal comes 90 s before the limit
        raise _err(where, "slurm.time_min", f"must be ≥ 3 (minutes; the timeout signal comes "
                   f"90 s before the limit), got {sweep.slurm['time_min']}")  # fmt: skip
    if sweep.slurm["max_requeues"] < 0:
        raise _err(where, "slurm.max_requeues", f"must be ≥ 0, got "
                   f"{sweep.slurm['max_requeues']}")  # fmt: skip
    if sweep.slurm["mem_gb"] < 0:
        raise _err(where, "slurm.mem_gb", f"must be ≥ 0 (0: the partition's default), got "
                   f"{sweep.slurm['mem_gb']}")  # fmt: skip
    for key, value in sweep.slurm["additional"].items():  # true: a flag (exclusive = true)
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):  # it becomes #SBATCH --key=value
            raise _err(where, f"slurm.additional.{key}", "an #SBATCH option name is a letter, "
                       "then letters, digits, - or _ (such as mail-type)")  # fmt: skip
        if not (isinstance(value, str | int | float) or value is True) or value is False:
            raise _err(where, f"slurm.additional.{key}", f"an #SBATCH value is a string, a "
                       f"number or true (a flag), got {value!r}")  # fmt: skip
        if len(f"x{value}x".splitlines()) > 1:  # a line break would end the #SBATCH line
            raise _err(where, f"slurm.additional.{key}", f"must fit on one line, got {value!r}")
    expand(sweep)  # every grid point must resolve and be runnable
    return sweep


def _description(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):  # --set parses 2024
        raise _err(where, "description", f"expected a string, got {value!r}")
    return str(value)


_SELECTORS = {"model": "model.name", "data": "data.source", "optimizer": "optimizer.name"}


def _varies(grid: Mapping, axis: str) -> bool:
    """A key that only some choices have (data.order) is an axis when the choice is one too."""
    return _SELECTORS.get(axis.split(".")[0]) in grid


def load(path: str | Path, overrides: Iterable[str] = ()) -> Sweep:
    """Read a sweep TOML file, apply ``--set`` style ``overrides`` (``key=value``), check it."""
    path = Path(path)
    if not path.is_file():
        why = ("is a folder, not a sweep file" if path.is_dir() else "is not a regular file "
               "(a device or a pipe), not a sweep file" if path.exists() else "no such sweep file")
        raise ConfigError(f"{path}: {why}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw = apply_overrides(raw, overrides, str(path))
    return from_dict(raw, str(path))


def parse_value(text: str) -> object:
    """A ``--set`` value: TOML syntax when it parses (numbers, true, [lists]), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_SECTIONS = ("resources", "local", "slurm")


def apply_overrides(raw: dict, overrides: Iterable[str], where: str) -> dict:
    """Apply ``key=value`` overrides to a raw sweep dict.

    ``optimizer.lr=0.01`` sets a key of the base run; ``grid.optimizer.lr=[0.01, 0.02]`` sets
    an axis (``grid.batch_size=[]``... is an error; remove an axis by setting the run key);
    ``horizons=[...]``, ``name=...``, ``local.workers=4``, ``slurm.partition=gpu``,
    ``slurm.additional.constraint=h100``, ``resources.processes=2`` set those sections.
    Setting a run key that is a grid axis of the file drops that axis (the run key wins);
    setting one key both ways in ``overrides`` is an error.
    """
    raw = copy.deepcopy(raw)
    fixed: set[str] = set()
    axes: set[str] = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        value = parse_value(text.strip())
        run_key = key[len("run.") :] if key.startswith("run.") else key
        if (key.startswith("grid.") and key[len("grid.") :] in fixed) or run_key in axes:
            name = key[len("grid.") :] if key.startswith("grid.") else run_key
            raise ConfigError(f"--set: {name} is set both as a grid axis (grid.{name}=...) and "
                              "as one value; keep one")  # fmt: skip
        if key in ("name", "description", "horizons"):
            raw[key] = value
        elif key.startswith("grid."):
            axes.add(key[len("grid.") :])
            raw.setdefault("grid", {})[key[len("grid.") :]] = value
        elif key.split(".")[0] in _SECTIONS:
            section, _, sub = key.partition(".")
            if not sub:
                raise ConfigError(f"--set {item!r}: name a key of [{section}]")
            table = raw.setdefault(section, {})
            if section == "slurm" and sub.startswith("additional."):  # one extra #SBATCH option
                extra = table.get("additional")
                table["additional"] = dict(extra) if isinstance(extra, Mapping) else {}
                table["additional"][sub[len("additional."):]] = value
            else:
                table[sub] = value
        else:
            fixed.add(run_key)
            raw["run"] = _apply(raw.get("run", {}), run_key, value, where, f"--set {key}")
            raw.get("grid", {}).pop(run_key, None)
    return raw


def expand(sweep: Sweep) -> list[Run]:
    """Every grid point as a checked :class:`Run` (ConfigError names the key and the point)."""
    where = sweep.source
    axes = list(sweep.grid.items())
    points = math.prod(len(v) for _, v in axes)
    if points > MAX_RUNS:
        raise ConfigError(f"{where}: grid: {' × '.join(str(len(v)) for _, v in axes)} = "
                          f"{_big(points)} grid points; at most {MAX_RUNS:,} runs in a sweep")
    runs: list[Run] = []
    seen: dict[str, dict] = {}
    for values in itertools.product(*(v for _, v in axes)):
        point = dict(zip((a for a, _ in axes), values, strict=True))
        raw = sweep.raw_run
        for axis, value in point.items():
            raw = _apply(raw, axis, value, where, f"grid.{axis}")
        shown = ", ".join(f"{k}={v}" for k, v in point.items()) or "the base run"
        try:
            config = resolve_run(raw, where)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (grid point {shown})") from None
        per_horizon = [[h] for h in sweep.horizons] if decays(config) else [sweep.horizons]
        if len(runs) + len(per_horizon) > MAX_RUNS:
            raise ConfigError(f"{where}: grid: more than {MAX_RUNS:,} runs (a decaying schedule "
                              f"is a run per horizon: {points:,} grid points × "
                              f"{len(sweep.horizons):,} horizons)")  # fmt: skip
        for horizons in per_horizon:
            cfg = dict(config, horizon=horizons[0]) if decays(config) else config
            _check_run(cfg, horizons, sweep.resources, where, shown)
            _check_optimizer(cfg, where, shown)
            rid = run_id(cfg)
            if rid in seen:
                raise ConfigError(f"{where}: grid: two grid points give the same run ({shown})")
            seen[rid] = point
            p = dict(point, horizon=horizons[0]) if decays(config) else dict(point)
            runs.append(Run(rid, cfg, p, list(horizons)))
    return runs


def _check_run(cfg: dict, horizons: list[int], resources: dict, where: str, shown: str) -> None:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {message} (grid point {shown})")

    for key in ("batch_size", "context", "eval_batches", "eval_batch_size", "check_every"):
        if cfg[key] < 1:
            raise fail(f"run.{key}", f"must be ≥ 1, got {cfg[key]}")
    if not 0 <= cfg["seed"] < 2**63:
        raise fail("run.seed", f"must be in [0, 2^63), got {cfg['seed']}")
    if not cfg["blowup"] > 1:
        raise fail("run.blowup", f"a loss above blowup × the first loss ends a run: must be > 1, "
                   f"got {cfg['blowup']}")  # fmt: skip
    if cfg["micro_batch_size"] < 0:
        raise fail("run.micro_batch_size", f"must be ≥ 0, got {cfg['micro_batch_size']}")
    procs = resources["processes"] * resources["nodes"]
    if cfg["batch_size"] % procs:
        raise fail("run.batch_size", f"{cfg['batch_size']} sequences do not split over {procs} "
                   "processes")  # fmt: skip
    local = cfg["batch_size"] // procs
    micro = cfg["micro_batch_size"] or local
    if local % micro:
        raise fail("run.micro_batch_size", f"{micro} does not divide the {local} sequences each "
                   "process takes per step")  # fmt: skip
    if cfg["log_every"] < 0:
        raise fail("run.log_every", f"must be ≥ 0, got {cfg['log_every']}")
    if cfg["checkpoint_minutes"] < 0:
        raise fail("run.checkpoint_minutes", f"must be ≥ 0, got {cfg['checkpoint_minutes']}")
    if cfg["noise_scale"] and cfg["batch_size"] // micro < 2:
        raise fail("run.noise_scale", f"the noise scale needs at least two micro-batches per "
                   f"step; set run.micro_batch_size below {local} (batch_size "
                   f"{cfg['batch_size']} over {procs} processes)")  # fmt: skip
    tps = cfg["batch_size"] * cfg["context"]
    for h in horizons:
        if h % tps:
            raise fail("horizons", f"{h} tokens is not a whole number of steps of batch_size × "
                       f"context = {tps} tokens")  # fmt: skip
    warm, final = cfg["schedule"]["warmup_steps"], cfg["schedule"]["final_fraction"]
    if warm < 0 or (warm > 0 and warm >= horizons[0] // tps):
        raise fail("run.schedule.warmup_steps", f"{warm} warmup steps do not fit the "
                   f"{horizons[0] // tps} steps to the first horizon")  # fmt: skip
    if not 0 <= final <= 1:
        raise fail("run.schedule.final_fraction", f"must be in [0, 1], got {final}")
    opt = cfg["optimizer"]
    if opt["lr"] <= 0:
        raise fail("run.optimizer.lr", f"must be > 0, got {opt['lr']}")
    if cfg["optimizer"]["name"] == "scion" and cfg["model"].get("tied"):
        raise fail("run.model.tied", "Scion needs untied embeddings (input and output norms "
                   "differ)")  # fmt: skip
    try:
        build_check(cfg)
    except (ValueError, TypeError) as exc:
        raise fail("run.model", str(exc)) from None
    data = cfg["data"]
    if data["source"] == "markov":  # the language's own checks, before anything runs
        from optimal_scaling.data import _check_markov_args

        try:
            _check_markov_args(data["vocab_size"], data["order"], data["branching"],
                               data["zipf"], data["restart"], data["segment_length"])  # fmt: skip
        except ValueError as exc:
            raise fail("run.data", str(exc)) from None
    if data["source"] == "markov":
        for key in ("n_train_tokens", "n_val_tokens"):
            if data[key] <= cfg["context"]:
                raise fail(f"run.data.{key}", f"{data[key]} tokens do not hold one window of "
                           f"context + 1 = {cfg['context'] + 1} tokens")  # fmt: skip
        stream = 2 * (data["n_train_tokens"] + data["n_val_tokens"])  # uint16 ids
        if stream > MAX_HOST_BYTES:
            raise fail("run.data.n_train_tokens", f"the Markov stream of "
                       f"{_big(data['n_train_tokens'] + data['n_val_tokens'])} tokens would "
                       f"take {_big(stream)} bytes of memory; at most {_big(MAX_HOST_BYTES)}")
    held = 16 * cfg["eval_batches"] * cfg["eval_batch_size"] * cfg["context"]  # int64 x and y
    if held > MAX_HOST_BYTES:
        raise fail("run.eval_batches", f"eval_batches × eval_batch_size × context = "
                   f"{_big(held // 16)} validation tokens would take {_big(held)} bytes of "
                   f"memory; at most {_big(MAX_HOST_BYTES)}")  # fmt: skip
    if data["source"] == "bytes" and data["max_bytes"] < 0:
        raise fail("run.data.max_bytes", f"must be ≥ 0 (0: no limit), got {data['max_bytes']}")
    if data["source"] == "bytes" and not 0 < data["val_fraction"] < 1:
        raise fail("run.data.val_fraction", f"must be in (0, 1) (a validation split is "
                   f"needed), got {data['val_fraction']}")  # fmt: skip


def _check_optimizer(cfg: dict, where: str, shown: str) -> None:
    """Build the run's optimizer over a small stand-in of its model, so that the optimizer's own
    checks (betas, presets, radii, parametrization, ...) run before anything trains."""
    import torch

    from optimal_scaling.models import GPT
    from optimal_scaling.sweep.runner import build_optimizer

    opt = cfg["optimizer"]
    if opt["name"] == "adamw" and opt["eps"] < 0:
        raise ConfigError(f"{where}: run.optimizer.eps: must be ≥ 0, got {opt['eps']} "
                          f"(grid point {shown})")  # fmt: skip
    small = copy.deepcopy(cfg)  # head size 2: small whatever the real model's shape
    heads = min(small["model"]["n_heads"], 64)  # (and at most 64 heads: width ≤ 128)
    small["model"].update(width=2 * heads, n_heads=heads, depth=1)
    small["context"] = 8
    key = json.dumps([small["model"], {k: v for k, v in opt.items() if k != "lr"}],
                     sort_keys=True)  # fmt: skip
    if key in _BUILT:
        return
    try:
        with torch.random.fork_rng(devices=[]):  # the stand-in draws from the CPU generator
            model = GPT(vocab_size=16, context=8,
                        **{k: v for k, v in small["model"].items() if k != "name"})
            build_optimizer(small, model)  # seeds its own generator (run.seed)
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError) as exc:
        raise ConfigError(f"{where}: run.optimizer: {exc} (grid point {shown})") from None
    _BUILT.add(key)


#: Stand-in optimizer settings already built in this process (a sweep expands several times).
_BUILT: set[str] = set()


def build_check(cfg: dict) -> None:
    """Check the run's model sizes without building it (a paper-size model would not fit): the
    GPT's own checks, then at most :data:`MAX_PARAMS` parameters (and rotary table entries)."""
    from optimal_scaling.models import GPT

    m, vocab = cfg["model"], _vocab_hint(cfg["data"])
    GPT.check_sizes(vocab, cfg["context"], m["width"], m["depth"],
                    m["n_heads"], m["mlp_ratio"], m["positions"], m["mlp"])  # fmt: skip
    n = gpt_params(m, vocab, cfg["context"])
    if n > MAX_PARAMS:
        raise ValueError(f"GPT: width {_big(m['width'])}, depth {_big(m['depth'])}, vocabulary "
                         f"{_big(vocab)} make {_big(n)} parameters; at most "
                         f"{_big(MAX_PARAMS)}")  # fmt: skip
    tables = cfg["context"] * (m["width"] // m["n_heads"]) if m["positions"] == "rope" else 0
    if tables > MAX_PARAMS:
        raise ValueError(f"GPT: rope tables of context × head size = {_big(tables)} numbers; "
                         f"at most {_big(MAX_PARAMS)}")  # fmt: skip


def gpt_params(model: dict, vocab_size: int, context: int) -> int:
    """The parameter count of ``GPT(vocab_size, context, **model)`` from its sizes alone, without
    building it (:meth:`GPT.num_params <optimal_scaling.models.GPT.num_params>` of the model)."""
    w, r, gain, bias = model["width"], model["mlp_ratio"], model["norm_gain"], model["bias"]
    up = r * w * (2 if model["mlp"] == "swiglu" else 1)  # the MLP's first layer (and SwiGLU's up)
    block = (4 * w * w + bias * 4 * w  # attention: qkv and the output projection
             + up * w + r * w * w + bias * (up + w)  # MLP
             + gain * (2 * w + model["norm_before_linear"] * (w + r * w)  # norms' gains
                       + model["qk_norm"] * 2 * (w // model["n_heads"])))  # fmt: skip
    embeddings = vocab_size * w + (context * w if model["positions"] == "learned" else 0)
    return embeddings + model["depth"] * block + gain * w + (0 if model["tied"] else w * vocab_size)


def _vocab_hint(data: dict) -> int:
    return int(data.get("vocab_size") or 256)
