"""The course's named experiments, runnable from a notebook or the command line.

``gpt_lr_transfer``: the learning-rate-transfer experiment of lecture 01. A small GPT is
trained with AdamW at every (parametrization, width, learning rate) of a grid, on the byte
corpus (the Python standard library's own sources) or the synthetic Markov language, and the
final validation loss is recorded. Under μP the loss-vs-LR curves of all widths should share
their optimum and their divergence edge; under SP the optimum should drift to smaller LR as
width grows. Regenerate the committed table with::

    optimal-scaling lr-transfer --out results/lr_transfer_gpt.csv
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from optimal_scaling import data as data_sources
from optimal_scaling.config import device as default_device
from optimal_scaling.coord_check import lr_transfer
from optimal_scaling.models import GPT
from optimal_scaling.parametrization import Parametrization
from optimal_scaling.train import TrainResult, train


@dataclass
class LRTransferConfig:
    """Settings of :func:`gpt_lr_transfer` (defaults: the full-mode run)."""

    parametrizations: tuple[str, ...] = ("sp", "mup")
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    log2_lrs: tuple[float, ...] = tuple(range(-12, 0))
    base_width: int = 32
    depth: int = 2
    n_heads: int = 4
    context: int = 64
    batch_size: int = 16
    steps: int = 200
    warmup: float = 0.1  # fraction of steps with linear warmup; then cosine toward 10 %
    data: str = "bytes"  # "bytes" (stdlib sources) or "markov"
    max_bytes: int = 4_000_000
    val_batches: int = 8
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def check(self) -> LRTransferConfig:
        """Raise a ValueError naming the first setting no run of the grid could use."""
        from optimal_scaling.parametrization import PRESETS

        for name in ("depth", "n_heads", "context", "batch_size", "steps", "val_batches",
                     "base_width", "max_bytes"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.widths or not self.log2_lrs or not self.parametrizations:
            raise ValueError("widths, log2_lrs and parametrizations must not be empty")
        for width in (*self.widths, self.base_width):
            GPT.check_sizes(256, self.context, width, self.depth, self.n_heads, 4)
        bad = [e for e in self.log2_lrs if not (math.isfinite(e) and abs(e) <= 64)]
        if bad:
            raise ValueError(f"log2_lrs must be finite and within ±64, got {bad}")
        unknown = [p for p in self.parametrizations if p not in PRESETS]
        if unknown:
            raise ValueError(f"unknown parametrizations {unknown}; choose from {PRESETS}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.data not in ("bytes", "markov"):
            raise ValueError(f"unknown data source {self.data!r}; choose 'bytes' or 'markov'")
        return self

    @classmethod
    def fast(cls) -> LRTransferConfig:
        """A seconds-long version that exercises the same code path."""
        return cls(
            widths=(32, 64),
            log2_lrs=(-10, -7, -4),
            steps=30,
            batch_size=8,
            context=32,
            val_batches=2,
            max_bytes=400_000,
        )


def load_data(cfg: LRTransferConfig) -> data_sources.TokenData:
    if cfg.data == "bytes":
        return data_sources.byte_corpus(max_bytes=cfg.max_bytes)
    if cfg.data == "markov":
        return data_sources.MarkovLanguage(seed=cfg.seed)
    raise ValueError(f"unknown data source {cfg.data!r}; choose 'bytes' or 'markov'")


def _schedule(steps: int, warmup: float):
    """Linear warmup to 1 over ``n_warm`` steps, then 0.1 + 0.9·½(1 + cos(π·progress)) with
    progress = (step − n_warm)/(steps − n_warm): the cosine starts at 1 (so the peak lasts two
    steps) and its last step is one short of 0.1 (0.107 at 20 steps, 0.10007 at 200). The
    committed table was made with this schedule, so it stays as it is."""
    n_warm = max(1, int(warmup * steps))

    def factor(step: int) -> float:  # step counts from 0
        if step < n_warm:
            return (step + 1) / n_warm
        progress = (step - n_warm) / max(1, steps - n_warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_gpt(
    cfg: LRTransferConfig,
    tokens: data_sources.TokenData,
    parametrization: str,
    width: int,
    lr: float,
    device: torch.device | None = None,
) -> TrainResult:
    """One run of the grid: the same init seed and the same batches at every (width, lr)."""
    device = device or default_device()
    model = GPT(
        vocab_size=tokens.vocab_size,
        context=cfg.context,
        width=width,
        depth=cfg.depth,
        n_heads=cfg.n_heads,
    )
    par = Parametrization(parametrization, base_width=cfg.base_width)
    par.apply(model, torch.Generator().manual_seed(cfg.seed))
    model.to(device)
    opt = torch.optim.AdamW(par.param_groups(model, lr=lr), betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.steps, cfg.warmup))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    val_gen = torch.Generator().manual_seed(cfg.seed + 2)
    val = [
        tokens.batch("val", cfg.batch_size, cfg.context, val_gen, device)
        for _ in range(cfg.val_batches)
    ]
    return train(
        model,
        opt,
        lambda: tokens.batch("train", cfg.batch_size, cfg.context, gen, device),
        cfg.steps,
        val_batches=val,
        scheduler=sched,
        progress=False,
    )


def gpt_lr_transfer(
    cfg: LRTransferConfig | None = None,
    progress: bool = True,
    done: pd.DataFrame | None = None,
    after_run: Callable[[pd.DataFrame], object] | None = None,
) -> pd.DataFrame:
    """Run the whole grid; one row per (parametrization, width, lr).

    Columns: parametrization, then those of :func:`~optimal_scaling.coord_check.lr_transfer`
    (width, lr, log2_lr, loss = final validation loss or inf when diverged, train_loss,
    initial_loss, diverged, reason, seconds). ``done``: rows of an earlier, interrupted run
    of the same config (checked by :func:`check_done`); their (parametrization, width,
    log2_lr) are not trained again.
    ``after_run(table)`` gets the rows so far after every run (the command writes them, so a
    killed grid keeps every run it finished and resumes from there).
    """
    from tqdm.auto import tqdm

    cfg = (cfg or LRTransferConfig()).check()  # before any data is read or run trained
    done = None if done is None else check_done(done, cfg)
    rows = [] if done is None or done.empty else [done]
    have = set() if done is None else {(p, int(w), round(float(e), 9)) for p, w, e in
                                       zip(done.parametrization, done.width, done.log2_lr,
                                           strict=True)}
    todo = [(p, w, e) for p in cfg.parametrizations for w in cfg.widths for e in cfg.log2_lrs
            if (p, w, round(float(e), 9)) not in have]  # fmt: skip
    tokens = load_data(cfg) if todo else None
    for p, w, e in tqdm(todo, disable=not progress, desc="lr transfer"):
        one = lr_transfer(lambda w_, lr_, p=p: train_gpt(cfg, tokens, p, w_, lr_), [w],
                          [2.0**e], progress=False)  # fmt: skip
        rows.append(one.assign(parametrization=p))
        if after_run is not None:
            after_run(_in_grid_order(pd.concat(rows, ignore_index=True), cfg))
    return _in_grid_order(pd.concat(rows, ignore_index=True), cfg)


COLUMNS = ("parametrization", "width", "lr", "log2_lr", "loss", "train_loss", "initial_loss",
           "diverged", "reason", "seconds")


def check_done(done: pd.DataFrame, cfg: LRTransferConfig) -> pd.DataFrame:
    """``done`` after checking it holds finished runs of ``cfg``'s grid: every column of
    :data:`COLUMNS`, numbers and True/False where they belong, each run of the grid at most
    once; else a ValueError naming the problem (a damaged or hand-edited resume file)."""
    missing = [c for c in COLUMNS if c not in done.columns]
    if missing:
        raise ValueError(f"no column {missing} (it has {list(done.columns)})")
    is_number, is_bool = pd.api.types.is_numeric_dtype, pd.api.types.is_bool_dtype
    if len(done):  # the columns of a table without rows have no type to check
        numbers = ["width", "lr", "log2_lr", "loss", "train_loss", "initial_loss", "seconds"]
        bad = [c for c in numbers if not is_number(done[c]) or is_bool(done[c])]
        if bad:
            raise ValueError(f"column {bad[0]!r} holds something other than numbers")
        if not is_bool(done["diverged"]):
            raise ValueError("column 'diverged' holds something other than True and False")
    grid = {(p, w, round(float(e), 9)) for p in cfg.parametrizations for w in cfg.widths
            for e in cfg.log2_lrs}  # fmt: skip
    for p, w, e in zip(done.parametrization, done.width, done.log2_lr, strict=True):
        if (p, w, round(float(e), 9)) not in grid:
            raise ValueError(f"the run parametrization={p}, width={w}, log2_lr={e} is not in the "
                             "grid of this config")  # fmt: skip
    if done.duplicated(["parametrization", "width", "log2_lr"]).any():
        raise ValueError("a run appears twice")
    return done


def _in_grid_order(grid: pd.DataFrame, cfg: LRTransferConfig) -> pd.DataFrame:
    """Rows by parametrization in the configured order, then by width and by lr, each
    ascending; columns with ``parametrization`` first."""
    rank = {p: i for i, p in enumerate(cfg.parametrizations)}
    grid = grid.assign(_p=grid.parametrization.map(rank)).sort_values(
        ["_p", "width", "log2_lr"], kind="stable").drop(columns="_p").reset_index(drop=True)
    return grid[["parametrization", *grid.columns.drop("parametrization")]]


def describe(cfg: LRTransferConfig) -> str:
    """The settings on one line, for a result file's header."""
    d = asdict(cfg)
    d.pop("extra")
    return ", ".join(f"{k}={v}" for k, v in d.items())
