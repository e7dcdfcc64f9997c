"""`coevo.sweep`: the table equals `coevo sweep`'s sweep.csv for the same points and seed,
and a `ProcessPoolExecutor` gives the same table as the sequential run."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import coevo
from conftest import cli

# The fresh-data grid (16 points) cut to 20 rounds and 2 replicates.
SCENARIO = "scenarios/sweep_fresh.ron"
SMALL = {"rounds": 20, "replicates": 2}


@pytest.fixture(scope="module")
def cli_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cli("sweep", SCENARIO, "--out", str(out), "--rounds", "20", "--replicates", "2", "--quiet")
    return pl.read_csv(out / "sweep.csv")


def test_the_design_of_the_scenario_equals_coevo_sweep(at_root, cli_table):
    table = coevo.sweep(SCENARIO, **SMALL)
    assert table.columns[:4] == ["point", "captioner.data.lambda", "painter.data.lambda", "status"]
    assert table.height == cli_table.height == 32  # 16 points, 2 models
    assert_frame_equal(table, cli_table, check_exact=True)


def test_a_list_of_points_equals_coevo_sweep_and_a_process_pool_the_sequential_run(at_root, cli_table):
    points = [{"captioner.data.lambda": a, "painter.data.lambda": b} for a in (0.0, 0.05, 0.2, 0.5) for b in (0.0, 0.05, 0.2, 0.5)]
    chosen = [0, 5, 15]
    subset = [points[i] for i in chosen]
    sequential = coevo.sweep(SCENARIO, subset, **SMALL)
    # Fork after the runs above: each run has its own worker pool, so a forked process has
    # none to miss; "spawn" is tested too, as Dask- or MPI-like executors start fresh processes.
    for method in ("fork", "spawn"):
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context(method)) as pool:
            parallel = coevo.sweep(SCENARIO, subset, executor=pool, **SMALL)
        assert_frame_equal(parallel, sequential, check_exact=True)
    # Point numbers are the list's; the values are those of the same points in coevo sweep.
    expected = (
        cli_table.filter(pl.col("point").is_in(chosen))
        .with_columns(pl.col("point").replace_strict({old: new for new, old in enumerate(chosen)}, return_dtype=pl.Int64))
    )
    assert_frame_equal(sequential, expected, check_exact=True)


def test_points_must_name_the_same_parameters():
    with pytest.raises(ValueError, match="every point must name the same ones"):
        coevo.sweep(SCENARIO, [{"seed": 1}, {"rounds": 3}])


def test_an_unknown_parameter_path_is_bad_input(at_root):
    with pytest.raises(ValueError, match="unknown parameter path `painter.colour`"):
        coevo.sweep(SCENARIO, [{"painter.colour": 1.0}], **SMALL)
