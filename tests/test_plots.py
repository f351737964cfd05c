"""The figures' colours and panels (subdistill.plots)."""

from matplotlib.image import imread

from subdistill.plots import OTHERS, SALIENT, curve_chart, curve_panels, series_colours

METHODS = ["at", "ce+kd", "dkd", "fitnet", "kd", "spkd", "student-only", "subdistill", "vid", "vkd"]


def test_only_subdistill_is_drawn_in_the_salient_colour():
    colours = series_colours(METHODS)
    assert colours["subdistill"] == SALIENT
    others = [colours[m] for m in METHODS if m != "subdistill"]
    assert SALIENT not in others
    assert len(set(others)) == len(others) == len(OTHERS)  # nine other methods, nine colours


def test_colours_repeat_past_the_palette_but_never_take_the_salient_one():
    names = [f"m{i}" for i in range(len(OTHERS) + 3)]
    colours = series_colours(names)
    assert colours["m0"] == colours[f"m{len(OTHERS)}"]
    assert SALIENT not in colours.values()


def test_panels_sit_side_by_side_in_one_figure(tmp_path):
    series = {"kd": [(1.0, 0.5), (2.0, 0.6)], "subdistill": [(1.0, 0.55), (2.0, 0.7)]}
    curve_chart(tmp_path / "one.png", series, reference=0.8, log_x=False)
    curve_panels(tmp_path / "two.png", {"minutes": series, "epochs": series}, reference=0.8,
                 log_x=False)
    one, two = imread(tmp_path / "one.png"), imread(tmp_path / "two.png")
    assert one.shape[0] == two.shape[0] and two.shape[1] > 1.7 * one.shape[1]
