import pytest

from subdistill.bench import GridConfig, choose_lambdas, final_cells, selection_cells
from subdistill.bench.grid import Cell, same_run
from subdistill.errors import ConfigError


def _grid(**kw):
    settings = dict(methods=["subdistill", "kd"], subtasks=["pets", [1, 9]], rhos=[0.8, 0.1],
                    seeds=[0, 1], lambdas=[1.0, 10.0])
    settings.update(kw)
    return GridConfig(**settings)


def test_selection_only_for_layerwise_methods_at_the_selection_setting():
    cells = selection_cells(_grid())
    assert {c.method for c in cells} == {"subdistill"}
    assert {(c.rho, c.seed) for c in cells} == {(0.8, 0)}
    assert [(c.subtask, c.lam) for c in cells] == [("pets", 1.0), ("pets", 10.0), ([1, 9], 1.0),
                                                    ([1, 9], 10.0)]
    assert selection_cells(_grid(lambdas=[100.0])) == []


def test_lambda_choice_uses_validation_and_breaks_ties_by_order():
    grid = _grid()
    cells = selection_cells(grid)
    chosen = choose_lambdas(grid, zip(cells, [0.5, 0.7, 0.6, 0.6]))
    assert chosen == {("pets", "subdistill"): 10.0, ("1-9", "subdistill"): 1.0}
    single = _grid(lambdas=[100.0])
    assert choose_lambdas(single, []) == {("pets", "subdistill"): 100.0, ("1-9", "subdistill"): 100.0}


def test_final_cells_cover_the_grid_and_reuse_the_selection_run():
    grid = _grid()
    selection = selection_cells(grid)
    finals = final_cells(grid, {("pets", "subdistill"): 10.0, ("1-9", "subdistill"): 1.0})
    assert len(finals) == 2 * 2 * 2 * 2
    assert all(c.lam is None for c in finals if c.method == "kd")
    reused = [c for c in finals if same_run(c, selection)]
    assert [(c.subtask, c.rho, c.seed, c.lam) for c in reused] == [("pets", 0.8, 0, 10.0),
                                                                   ([1, 9], 0.8, 0, 1.0)]


def test_cell_paths_and_options():
    cell = Cell("select", "pets", "vid", 0.02, 3, 10.0)
    assert str(cell.path) == "select/pets/vid/rho0.02/seed3/lambda10"
    grid = _grid(methods=["vid"], options={"vid": {"init_variance": 2.0}})
    assert cell.options(grid) == {"init_variance": 2.0, "lambda": 10.0}


def test_invalid_grids():
    with pytest.raises(ConfigError, match="Did you mean 'kd'"):
        _grid(methods=["kdd"])
    with pytest.raises(ConfigError, match="must not be empty"):
        _grid(seeds=[])
    with pytest.raises(ConfigError, match="grid.lambdas"):
        _grid(options={"fitnet": {"lambda": 3.0}})
    assert set(_grid(methods=["all"]).methods) >= {"subdistill", "dkd", "vkd"}
    with pytest.raises(ConfigError, match="positive"):
        _grid(rhos=[0.8], epochs={0.8: 0})


def test_epochs_default_to_equal_student_steps_per_rho():
    grid = _grid(rhos=[0.8], epochs={0.8: 3, 0.1: 12})  # narrowed: the 0.1 entry is unused
    assert grid.epochs_at(0.8, 5) == 3 and grid.epochs_at(0.1, 5) == 12
    assert [grid.epochs_at(rho, 3) for rho in (0.02, 0.3, 0.8, 1.0)] == [120, 8, 3, 3]


def test_per_method_candidates():
    grid = _grid(methods=["at", "spkd", "kd"], lambdas={"at": [100.0, 1000.0, 10000.0],
                                                        "spkd": [3000.0]},
                 options={"at": {"calibration": "none"}, "spkd": {"calibration": "none"}})
    cells = selection_cells(grid)
    assert {c.method for c in cells} == {"at"}  # spkd has a single candidate
    assert [c.lam for c in cells if c.subtask == "pets"] == [100.0, 1000.0, 10000.0]
    chosen = choose_lambdas(grid, zip(cells, [0.5, 0.7, 0.7, 0.9, 0.6, 0.6]))
    assert chosen == {("pets", "at"): 1000.0, ("1-9", "at"): 100.0, ("pets", "spkd"): 3000.0,
                      ("1-9", "spkd"): 3000.0}
    with pytest.raises(ConfigError, match="no candidates for method spkd"):
        _grid(methods=["at", "spkd"], lambdas={"at": [1.0]})
