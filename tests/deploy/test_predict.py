import json

from PIL import Image

from subdistill.cli import main
from subdistill.deploy.export import export


def _images(folder):
    folder.mkdir()
    for i, size in enumerate((8, 32, 5)):
        Image.new("RGB", (size, size + i), (40 * i, 200, 10)).save(folder / f"ok{i}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_predict_classifies_every_readable_image_and_names_the_others(tiny_run, tmp_path, capsys):
    folder = _images(tmp_path / "images")
    assert main(["predict", str(tiny_run), str(folder), "--top", "2"]) == 2
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 5 for line in lines)
    assert err.strip().count("\n") == 0 and "corrupt.png: cannot read it as an image" in err


def test_predict_with_an_exported_model_gives_the_same_answers(tiny_run, tmp_path, capsys):
    folder = _images(tmp_path / "images")
    export(tiny_run, "onnx", tmp_path / "m.onnx", parity_images=16)
    results = []
    for model in (tiny_run, tmp_path / "m.onnx"):
        main(["predict", str(model), str(folder / "ok0.png"), str(folder / "ok1.png"), "--json",
              "--top", "9"])
        results.append(json.loads(capsys.readouterr().out))
    assert [r["top"][0][0] for r in results[0]] == [r["top"][0][0] for r in results[1]]
    for a, b in zip(results[0], results[1]):
        assert abs(a["top"][0][1] - b["top"][0][1]) < 1e-4
        assert len(a["top"]) == 4 and abs(sum(p for _, p in a["top"]) - 1) < 1e-5  # all classes


def test_predict_on_a_missing_model_is_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "m.onnx"), str(tmp_path)]) == 2
    assert "neither a run directory nor an exported model" in capsys.readouterr().err
