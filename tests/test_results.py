from pathlib import Path

from subdistill.results import final_runs, path_safe, subtask_label


def test_subtask_labels_are_one_path_component_inside_the_folder():
    assert subtask_label("vehicles") == "vehicles"
    assert subtask_label([3, 5, 8]) == "3-5-8"
    assert subtask_label(["T-shirt/top", "Trouser"]) == "T-shirt_top-Trouser"
    for hostile in ("../../../escape", "..", ".hidden", "a/b", "a\\b", "", "/abs"):
        label = path_safe(hostile)
        assert "/" not in label and "\\" not in label and not label.startswith(".")
        assert (Path("out") / label).resolve().parent == Path("out").resolve()


def test_final_runs_pick_the_final_rows_of_one_cell():
    rows = [{"stage": "final", "subtask": "pets", "rho": "0.8", "seed": "0", "method": "kd",
             "run_dir": "final/pets/kd"},
            {"stage": "select", "subtask": "pets", "rho": "0.8", "seed": "0", "method": "fitnet",
             "run_dir": "select/pets/fitnet"}]
    assert final_runs(rows, "out", "pets", 0.8, 0) == {"kd": Path("out/final/pets/kd")}
