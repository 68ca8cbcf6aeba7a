"""Coordinate checks measure what μP predicts (microsoft/mup's convention: mean |h| per layer,
one batch reused, step 1 before any update, slopes against width on log–log axes)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from optimal_scaling.coord_check import (
    coord_check,
    fit_slopes,
    lr_transfer,
    mlp_coord_check,
    optima,
    plot_coords,
    record_coords,
)
from optimal_scaling.data import TeacherTask
from optimal_scaling.models import MLP
from optimal_scaling.parametrization import Parametrization
from optimal_scaling.train import TrainResult, mse, train

WIDTHS = [128, 256, 512, 1024, 2048]  # a 16× range


def adam_coord_check(name: str) -> pd.DataFrame:
    return mlp_coord_check(name, "adam", widths=WIDTHS, lr=1e-2, steps=4, seeds=range(4))


@pytest.fixture(scope="module")
def mup_slopes():
    return fit_slopes(adam_coord_check("mup"))


@pytest.fixture(scope="module")
def sp_slopes():
    return fit_slopes(adam_coord_check("sp"))


def test_mup_every_layer_is_flat_in_width(mup_slopes):
    # after the first update every statistic of every layer is width-independent
    later = mup_slopes[mup_slopes.step >= 2]
    assert set(later.layer) == {"input", "hidden.0", "output"}
    assert later.slope.abs().max() <= 0.15, later.sort_values("slope").to_string()
    # before any update: input and hidden outputs are flat too
    init = mup_slopes[(mup_slopes.step == 1) & (mup_slopes.layer != "output")]
    assert len(init) == 2 and init.slope.abs().max() <= 0.15


def test_mup_readout_starts_at_zero_like_inverse_sqrt_width(mup_slopes):
    # Table 3: readout init variance 1/fan_in², so its output at init is Θ(n^−1/2)
    init = mup_slopes.query("step == 1 and layer == 'output' and stat == 'out'").slope
    assert init.item() == pytest.approx(-0.5, abs=0.1)


def test_sp_output_change_grows_with_width(sp_slopes):
    delta = sp_slopes.query("layer == 'output' and stat == 'delta' and step >= 2").slope
    assert len(delta) == 3 and delta.min() >= 0.5, delta.tolist()
    hidden = sp_slopes.query("layer == 'hidden.0' and stat == 'delta' and step >= 2").slope
    assert hidden.min() >= 0.5  # SP's hidden features also move faster with width under Adam


def test_fit_slopes_recovers_a_known_power_law():
    widths = [64, 128, 256, 512]
    df = pd.DataFrame(
        [
            {"width": w, "seed": 0, "step": 2, "layer": "a", "stat": "out", "value": 3.0 * w**0.7}
            for w in widths
        ]
    )
    assert fit_slopes(df).slope.item() == pytest.approx(0.7)


def test_mup_loss_does_not_grow_with_width():
    """ "Wider is better": at a fixed learning rate, μP's loss after N steps falls with width."""
    task = TeacherTask(d_in=16, width=64, seed=0)
    x_val, y_val = task.batch(1024, torch.Generator().manual_seed(5))
    par = Parametrization("mup", base_width=128)
    losses = []
    for width in [128, 256, 512, 1024]:
        per_seed = []
        for seed in range(2):
            model = par.apply(MLP(16, width, 1, depth=3), torch.Generator().manual_seed(seed))
            opt = torch.optim.Adam(par.param_groups(model, lr=3e-3))
            gen = torch.Generator().manual_seed(100)  # the same data for every width
            result = train(
                model,
                opt,
                lambda gen=gen: task.batch(32, gen),
                60,
                val_batches=[(x_val, y_val)],
                loss_fn=mse,
                progress=False,
            )
            per_seed.append(result.final_val_loss)
        losses.append(np.mean(per_seed))
    assert all(b <= a * 1.01 for a, b in zip(losses, losses[1:], strict=False)), losses


def test_plot_coords_facets_by_step():
    df = adam_coord_check("mup")
    fig = plot_coords(df, "delta")
    steps = {a.text for a in fig.layout.annotations}
    assert steps == {"step=2", "step=3", "step=4"}
    with pytest.raises(ValueError, match="unknown statistic"):
        plot_coords(df, "mean")


def test_lr_transfer_grid_and_optima():
    task = TeacherTask(d_in=8, width=32, seed=0)
    val = [task.batch(256, torch.Generator().manual_seed(1))]

    def run(width, lr):
        model = MLP(8, width, 1, depth=3)
        gen = torch.Generator().manual_seed(0)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        return train(
            model,
            opt,
            lambda: task.batch(32, gen),
            20,
            val_batches=val,
            loss_fn=mse,
            progress=False,
        )

    grid = lr_transfer(run, [16, 32], [1e-3, 1e-1, 1e3])
    assert len(grid) == 6 and grid.query("lr == 1e3").diverged.all()
    best = optima(grid)
    assert (best.best_lr == 1e-1).all()  # the tiny lr barely moves in 20 steps
    assert (best.divergence_lr == 1e3).all()
    for _, row in best.iterrows():
        rows = grid[grid.width == row.width]
        assert row.best_loss == rows[~rows.diverged].loss.min()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        mlp_coord_check("mup", "lion")
    with pytest.raises(ValueError, match="at least one width"):
        mlp_coord_check("mup", widths=[])
    with pytest.raises(ValueError, match="at least 2 steps"):
        mlp_coord_check("mup", widths=[8], steps=1)


def test_the_number_of_steps_must_be_an_int():
    """steps = 2.5 or "2" failed deep inside (range(), a str < int comparison)."""
    model = nn.Linear(2, 1)
    batch = (torch.randn(3, 2), torch.randn(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="record_coords: steps must be an int ≥ 2"):
        record_coords(model, opt, batch, mse, steps=2.5)
    with pytest.raises(ValueError, match="coord_check: steps must be an int ≥ 2"):
        coord_check(lambda w: nn.Linear(2, 1), lambda m: opt, batch, [8], mse, steps=1.0)
    with pytest.raises(ValueError, match="mlp_coord_check: steps must be an int ≥ 2 .*got '2'"):
        mlp_coord_check("mup", widths=[8], steps="2")
    assert record_coords(model, opt, batch, mse, steps=2).step.max() == 2


def test_record_coords_reports_mean_absolute_coordinates_and_their_change():
    """The statistics are mean|h_t| and mean|h_t − h_1| of each layer's output (not an RMS),
    checked against a hand-run copy of the same training."""
    import copy

    torch.manual_seed(0)
    model = MLP(3, 8, 2, depth=2)
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    table = record_coords(model, torch.optim.SGD(model.parameters(), lr=0.5), (x, y), mse,
                          steps=3)  # fmt: skip
    opt = torch.optim.SGD(twin.parameters(), lr=0.5)
    first = None
    for step in (1, 2, 3):
        h = twin.input(x).detach()
        first = h if first is None else first
        got = table[(table.step == step) & (table.layer == "input")].set_index("stat").value
        assert got["out"] == pytest.approx(h.abs().mean().item(), rel=1e-6)
        assert got["delta"] == pytest.approx((h - first).abs().mean().item(), abs=1e-7)
        opt.zero_grad()
        mse(twin(x), y).backward()
        opt.step()
    assert table[table.step == 3].set_index(["layer", "stat"]).value["input", "delta"] > 0


def test_optima_counts_a_run_that_ended_no_better_than_it_started_as_failed():
    """A run that never diverged but ended at or above its initial loss is a failure: it
    marks the divergence edge above the optimum."""
    grid = pd.DataFrame({"width": [8] * 4, "lr": [0.1, 0.2, 0.4, 0.8],
                         "loss": [2.0, 1.5, 3.0, 2.9], "initial_loss": [3.0] * 4,
                         "diverged": [False] * 4})  # fmt: skip
    row = optima(grid, margin=0.5).iloc[0]
    assert (row.best_lr, row.divergence_lr) == (0.2, 0.4)  # 3.0 ≥ 3.0: ended no better
    assert optima(grid.drop(columns="initial_loss"), margin=0.5).iloc[0].divergence_lr != 0.4


def test_optima_refuses_an_empty_grid_text_columns_and_a_bad_margin():
    """An empty grid gave a table without columns; a text loss failed in np.isfinite."""
    grid = pd.DataFrame({"width": [8] * 3, "lr": [0.1, 0.2, 0.4], "loss": [2.0, 1.5, 2.2],
                         "diverged": [False] * 3})  # fmt: skip
    row = optima(grid, margin=0.5).iloc[0]
    assert (row.best_lr, row.best_loss, row.edge_lr) == (0.2, 1.5, 0.4)
    with pytest.raises(ValueError, match="optima: the grid is empty"):
        optima(grid.iloc[:0])
    with pytest.raises(TypeError, match="optima: column 'loss' must hold numbers, got dtype"):
        optima(grid.assign(loss=["2.0", "1.5", "2.2"]))
    with pytest.raises(TypeError, match="optima: column 'lr' must hold numbers"):
        optima(grid.assign(lr=["0.1", "0.2", "0.4"]))
    with pytest.raises(TypeError, match="optima: margin must be a number"):
        optima(grid, margin="0.5")
    with pytest.raises(ValueError, match=r"optima: margin must be in \[0, inf\)"):
        optima(grid, margin=-1.0)


def test_optima_edges():
    grid = pd.DataFrame(
        {
            "width": [8] * 5,
            "lr": [0.1, 0.2, 0.4, 0.8, 1.6],
            "loss": [2.0, 1.5, 1.8, 2.2, math.inf],
            "initial_loss": [3.0] * 5,
            "diverged": [False, False, False, False, True],
        }
    )
    row = optima(grid, margin=0.5).iloc[0]
    assert (row.best_lr, row.best_loss) == (0.2, 1.5)
    assert row.edge_lr == 0.8  # 2.2 > 1.5 + 0.5; 1.8 is not
    assert row.divergence_lr == 1.6


@pytest.mark.parametrize("order", [["sp", "mup"], ["mup", "sp"], ["ntk", "sp", "mup"]])
def test_lr_transfer_stars_sit_in_their_own_panels(order):
    """Each panel's stars are that panel's optima, whatever order the facet values come in."""
    from optimal_scaling.coord_check import plot_lr_transfer

    rows = []
    for k, par in enumerate(order):  # each parametrization has its optimum at a different lr
        for width in (32, 64):
            for e in range(-6, 0):
                loss = 2.0 + 0.1 * (e + 1 + k) ** 2 + 0.01 * width / 32
                rows.append({"parametrization": par, "width": width, "lr": 2.0**e, "loss": loss,
                             "diverged": False})
    grid = pd.DataFrame(rows)
    fig = plot_lr_transfer(grid, facet="parametrization")
    stars = [t for t in fig.data if t.name == "optimum"]
    assert len(stars) == len(order)
    for star in stars:
        lines = [t for t in fig.data if t.name != "optimum" and t.xaxis == star.xaxis]
        labels = {t.hovertemplate.split("parametrization=")[1].split("<")[0] for t in lines}
        assert len(labels) == 1
        (par,) = labels
        sub = grid[grid["parametrization"] == par]
        best = sub.loc[sub.groupby("width")["loss"].idxmin()]
        assert sorted(star.x) == sorted(best["lr"])
        assert sorted(star.y) == pytest.approx(sorted(best["loss"]))


def test_plot_lr_transfer_names_an_unknown_facet():
    """facet='foo' was a pandas KeyError; the error lists the grid's columns."""
    from optimal_scaling.coord_check import plot_lr_transfer

    grid = pd.DataFrame({"width": [8, 8], "lr": [0.1, 0.2], "loss": [2.0, 1.5],
                         "diverged": [False, False]})  # fmt: skip
    with pytest.raises(ValueError, match=r"plot_lr_transfer: missing columns \['foo'\]; the "
                       r"table has \['width', 'lr', 'loss', 'diverged'\]"):
        plot_lr_transfer(grid, facet="foo")
    assert [t.name for t in plot_lr_transfer(grid).data] == ["8", "optimum"]


def test_width_axes_show_the_widths():
    rows = [{"step": s, "layer": "hidden", "width": w, "stat": "out", "value": 1.0 / w}
            for s in (1, 2) for w in (64, 256, 1024)]
    fig = plot_coords(pd.DataFrame(rows), "out")
    assert list(fig.layout.xaxis.tickvals) == [64, 256, 1024]
    assert list(fig.layout.xaxis.ticktext) == ["64", "256", "1024"]


def test_optima_takes_one_column_name_and_names_missing_columns():
    grid = pd.DataFrame({"width": [8, 8, 16, 16], "lr": [0.1, 0.2, 0.1, 0.2],
                         "loss": [2.0, 1.5, 1.0, 1.2], "diverged": [False] * 4})  # fmt: skip
    one = optima(grid, by="width")
    assert one.width.tolist() == [8, 16] and one.best_lr.tolist() == [0.2, 0.1]
    assert one.equals(optima(grid, by=["width"]))
    with pytest.raises(ValueError, match=r"optima: the grid has no column \['depth'\]"):
        optima(grid, by="depth")
    with pytest.raises(ValueError, match=r"no column \['diverged'\]"):
        optima(grid.drop(columns="diverged"))


def test_default_watched_layers_are_the_modules_with_a_weight_matrix():
    """Without ``layers``: every module that owns a weight *matrix* (not a norm's gain vector).
    (Kills: 1-D weights watched too.)"""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    table = record_coords(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), mse, 2)
    assert set(table.layer) == {"0", "2"}
    assert len(table) == 2 * 2 * 2  # steps × layers × stats


def test_record_coords_leaves_no_hooks_behind():
    """The forward hooks are removed once the statistics are taken. (Kills: hooks left on.)"""
    torch.manual_seed(0)
    model = MLP(3, 8, 2, depth=3)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    record_coords(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), mse, steps=2)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_coord_check_seeds_each_model_and_labels_the_seed():
    """make_model(width) runs after torch.manual_seed(seed): the default init of seed s is the
    model torch.manual_seed(s) gives; the seed column holds s. (Kills: seed ignored; seed column
    constant.)"""
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)

    def make_model(width):
        return MLP(3, width, 1, depth=2)

    df = coord_check(make_model, lambda m: torch.optim.SGD(m.parameters(), lr=0.0), batch,
                     [8], mse, steps=2, seeds=(3, 4))  # fmt: skip
    assert sorted(df.seed.unique()) == [3, 4]
    for seed in (3, 4):
        torch.manual_seed(seed)
        ref = make_model(8)
        want = ref.input(batch[0]).abs().mean().item()
        got = df.query("seed == @seed and step == 1 and layer == 'input' and stat == 'out'")
        assert got.value.item() == pytest.approx(want, rel=1e-6)


def test_mlp_coord_check_uses_the_smallest_width_as_base_whatever_the_order():
    """Base width = the smallest width, where μP is SP: μP's table at that width is SP's (same
    seeds, same batch, same learning rate). (Kills: base width = the first width given.)"""
    mup = mlp_coord_check("mup", widths=(32, 16), steps=2, seeds=(0,))
    sp = mlp_coord_check("sp", widths=(16, 32), steps=2, seeds=(0,))
    cols = ["step", "layer", "stat"]
    a = mup[mup.width == 16].sort_values(cols).value.to_numpy()
    b = sp[sp.width == 16].sort_values(cols).value.to_numpy()
    assert len(a) == 2 * 3 * 2
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("optimizer, lr", [("adam", 1e-2), ("sgd", 0.05)])
def test_mlp_coord_check_default_learning_rates(optimizer, lr):
    """Adam at lr 1e-2 or SGD at lr 0.05 unless lr is given. (Kills: defaults swapped.)"""
    default = mlp_coord_check("mup", optimizer, widths=(16, 32), steps=2, seeds=(0,))
    given = mlp_coord_check("mup", optimizer, widths=(16, 32), lr=lr, steps=2, seeds=(0,))
    np.testing.assert_allclose(default.value.to_numpy(), given.value.to_numpy(), rtol=1e-6)
    assert (default.query("step == 2 and stat == 'delta'").value > 0).all()


def test_fit_slopes_averages_the_seeds_before_taking_logs():
    """Seeds averaged first: the slope is that of log(mean over seeds), here exactly 0.7, not
    that of mean(log). (Kills: every seed fitted as its own point.)"""
    rows = []
    for w, t in ((64, 0.5), (128, 0.1), (256, 0.5), (512, 0.1)):
        mean = 3.0 * w**0.7
        for seed, v in enumerate((2 * mean * t, 2 * mean * (1 - t))):
            rows.append({"width": w, "seed": seed, "step": 2, "layer": "a", "stat": "out",
                         "value": v})  # fmt: skip
    assert fit_slopes(pd.DataFrame(rows)).slope.item() == pytest.approx(0.7, abs=1e-9)


def test_lr_transfer_records_the_validation_loss_and_the_first_training_loss():
    """loss = final validation loss, train_loss = final training loss, initial_loss = the first
    step's loss. (Kills: initial_loss = last loss; loss = training loss.)"""

    def run(width, lr):
        hist = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.5, 2.0],
                             "val_loss": [np.nan, 1.75, 1.5]})  # fmt: skip
        return TrainResult(hist)

    row = lr_transfer(run, [8], [0.1]).iloc[0]
    assert (row.loss, row.train_loss, row.initial_loss) == (1.5, 2.0, 3.0)


def _grid(loss, initial=3.0, diverged=None):
    n = len(loss)
    return pd.DataFrame({"width": [8] * n, "lr": [0.1 * 2**i for i in range(n)], "loss": loss,
                         "initial_loss": [initial] * n,
                         "diverged": diverged or [False] * n})  # fmt: skip


def test_optima_edge_needs_a_loss_more_than_margin_above_the_best():
    """edge_lr: the smallest lr above the optimum whose loss exceeds the best by *more than*
    margin; best + margin exactly is not past the wall. (Kills: ≥ margin.)"""
    row = optima(_grid([2.0, 1.5, 2.0, 2.25]), margin=0.5).iloc[0]
    assert row.best_loss == 1.5 and row.edge_lr == pytest.approx(0.8)


def test_optima_divergence_lr_lies_above_the_optimum():
    """divergence_lr is the smallest failing lr *above* the optimum: a tiny lr that ended no
    better than it started is below it and does not count. (Kills: any failing lr.)"""
    row = optima(_grid([3.0, 1.5, 1.8, 3.5]), margin=10.0).iloc[0]
    assert row.best_lr == pytest.approx(0.2) and row.divergence_lr == pytest.approx(0.8)


def test_optima_treats_a_non_finite_loss_as_a_failed_run():
    """A run fails when its loss is not finite, even when not flagged diverged: a NaN loss is
    neither the optimum nor skipped as the edge. (Kills: only the diverged flag counts.)"""
    row = optima(_grid([2.0, float("nan"), 1.5, 2.2]), margin=10.0).iloc[0]
    assert (row.best_lr, row.best_loss) == (pytest.approx(0.4), 1.5)
    row = optima(_grid([2.0, 1.5, float("nan"), 2.2]), margin=10.0).iloc[0]
    assert row.divergence_lr == pytest.approx(0.4)


def test_a_numpy_width_grid_works_end_to_end():
    """2 ** np.arange(...) gives numpy integers: a coordinate check over them runs, as one over
    the same widths as ints does, with the same numbers."""
    kw = dict(steps=2, seeds=[0], d_in=4)
    got = mlp_coord_check("mup", widths=2 ** np.arange(4, 6), **kw)
    want = mlp_coord_check("mup", widths=[16, 32], **kw)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
