import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill.data.augment import build_augment
from subdistill.errors import ConfigError, DataError
from subdistill.methods import StepOutputs, build_method
from subdistill.taps import LayerTaps, as_grid
from subdistill.training import TrainConfig, distill
from subdistill.training.evaluate import accuracy
from subdistill.training.pairs import probe_pairs
from subdistill.training.teacher_cache import TeacherCache, cached_accuracy

PAIRS = {"stage1": "stage1", "stage2": "stage2"}


def _data(n=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=generator), torch.arange(n) % 3)


def _models():
    torch.manual_seed(0)
    return TinyCNN((6, 8)), TinyCNN((4, 4))


def test_cached_outputs_give_the_live_losses(tmp_path):
    teacher, student = _models()
    train = _data()
    cache = TeacherCache.build(tmp_path, teacher, train, list(PAIRS), batch_size=16)
    x, y, cached = next(cache.batches(8, torch.Generator().manual_seed(0)))
    teacher.eval()
    with LayerTaps(teacher, PAIRS) as t_taps, LayerTaps(student, PAIRS.values()) as s_taps:
        live_logits = teacher(x)
        live_features = {k: as_grid(v) for k, v in t_taps.outputs.items()}
        student_logits = student(x)
        student_features = {k: as_grid(v) for k, v in s_taps.outputs.items()}
    torch.testing.assert_close(cached.logits, live_logits, rtol=1e-5, atol=1e-6)
    pairs = probe_pairs(teacher, student, PAIRS, x[:2])
    for name in ("fitnet", "at", "spkd", "vkd"):
        torch.manual_seed(1)
        method = build_method(name, pairs)
        live = method(StepOutputs(student_logits, y, live_logits, student_features, live_features))
        from_cache = method(StepOutputs(student_logits, y, cached.logits, student_features,
                                        cached.features))
        assert live.keys() == from_cache.keys()
        for key in live:
            torch.testing.assert_close(from_cache[key], live[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{name} {key}")


def test_training_from_the_cache_follows_the_live_run(tmp_path):
    # one batch per epoch, so both runs see the same batches (the live loader and the cache
    # shuffle with different draws); the histories then agree up to float rounding
    histories = []
    for cache in ("", str(tmp_path / "cache")):
        teacher, student = _models()
        result = distill(teacher, student, _data(), _data(24, 1), method="fitnet", pairs=PAIRS,
                         epochs=3, batch_size=40, optimizer="sgd", lr=0.01, progress=False,
                         teacher_cache=cache)
        histories.append(result.history)
    live, cached = histories
    for a, b in zip(live, cached, strict=True):
        for key in ("loss", "loss/kd", "loss/layer/stage1", "loss/layer/stage2"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
        assert b["val_accuracy"] == a["val_accuracy"]


def test_subdistill_trains_from_the_cache(tmp_path):
    teacher, student = _models()
    result = distill(teacher, student, _data(), _data(24, 1), method="subdistill", pairs=PAIRS,
                     epochs=2, batch_size=8, progress=False, teacher_cache=str(tmp_path / "c"),
                     run_dir=tmp_path / "run")
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)


def test_cache_is_reused_and_keyed_by_its_inputs(tmp_path, monkeypatch):
    teacher, _ = _models()
    first = TeacherCache.build(tmp_path, teacher, _data(), ["stage2"])
    import subdistill.training.teacher_cache as module

    def fail(*args, **kwargs):
        raise AssertionError("the cache was recomputed")

    monkeypatch.setattr(module, "_write_outputs", fail)
    assert TeacherCache.build(tmp_path, teacher, _data(), ["stage2"]).folder == first.folder
    with pytest.raises(AssertionError):  # other inputs: a new cache
        TeacherCache.build(tmp_path, teacher, _data(seed=5), ["stage2"])
    with pytest.raises(AssertionError):  # other teacher weights: a new cache
        torch.nn.init.zeros_(teacher.head.bias.data.add_(1.0))
        TeacherCache.build(tmp_path, teacher, _data(), ["stage2"])


def test_a_cache_folder_missing_an_array_is_computed_again(tmp_path, caplog):
    teacher, _ = _models()
    first = TeacherCache.build(tmp_path, teacher, _data(), ["stage1", "stage2"])
    logits = np.array(first.logits)
    del first
    (tmp_path / next(p.name for p in tmp_path.iterdir()) / "layer1.npy").unlink()
    with caplog.at_level("WARNING"):
        again = TeacherCache.build(tmp_path, teacher, _data(), ["stage1", "stage2"])
    assert "lacks layer1.npy; computing it again" in caplog.text
    np.testing.assert_array_equal(np.array(again.logits), logits)
    assert set(again.features) == {"stage1", "stage2"}


def test_teacher_accuracy_is_scored_once_per_model_and_data(tmp_path, monkeypatch):
    teacher, _ = _models()
    data = _data()
    first = cached_accuracy(tmp_path, teacher, data, batch_size=16)
    assert first == accuracy(teacher, data)
    assert len(list((tmp_path / "accuracy").glob("*.json"))) == 1
    import subdistill.training.teacher_cache as module

    def fail(*args, **kwargs):
        raise AssertionError("the accuracy was recomputed")

    monkeypatch.setattr(module, "accuracy", fail)
    assert cached_accuracy(tmp_path, teacher, data) == first
    with pytest.raises(AssertionError):  # other data: scored anew
        cached_accuracy(tmp_path, teacher, _data(seed=3))
    with pytest.raises(AssertionError):  # other weights: scored anew
        torch.nn.init.zeros_(teacher.head.bias.data.add_(1.0))
        cached_accuracy(tmp_path, teacher, data)


def test_run_records_the_remembered_teacher_accuracy(tmp_path):
    teacher, student = _models()
    kwargs = dict(method="kd", epochs=1, batch_size=20, progress=False)
    live = distill(teacher, student, _data(), _data(24, 1), test=_data(30, 2), **kwargs)
    cached = distill(teacher, student, _data(), _data(24, 1), test=_data(30, 2),
                     teacher_cache=str(tmp_path / "c"), **kwargs)
    assert cached.teacher_test_accuracy == live.teacher_test_accuracy
    assert cached.teacher_val_accuracy == live.teacher_val_accuracy
    assert len(list((tmp_path / "c" / "accuracy").glob("*.json"))) == 2


def test_augmented_copies_are_seeded_and_copy_zero_is_the_original(tmp_path):
    teacher, _ = _models()
    train = _data()
    augment = build_augment("crop-flip", 8)
    kwargs = dict(copies=3, augment=augment, augment_name="crop-flip", seed=4)
    state = torch.get_rng_state()
    a = TeacherCache.build(tmp_path / "a", teacher, train, [], **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = TeacherCache.build(tmp_path / "b", teacher, train, [], **kwargs)
    assert torch.equal(torch.from_numpy(np.array(a.inputs[0])), train.tensors[0])
    assert not torch.equal(torch.from_numpy(np.array(a.inputs[1])), train.tensors[0])
    assert np.array_equal(a.inputs[:], b.inputs[:])


def test_epoch_visits_every_image_once_as_one_of_its_copies(tmp_path):
    teacher, _ = _models()
    train = _data(21)
    augment = build_augment("flip", 8)
    cache = TeacherCache.build(tmp_path, teacher, train, [], copies=2, augment=augment,
                               augment_name="flip")
    batches = list(cache.batches(4, torch.Generator().manual_seed(0)))
    assert len(batches) == cache.epoch_length(4) == 5  # the last batch of one is dropped
    seen = torch.cat([x for x, _, _ in batches])
    assert len(seen) == 20
    originals = train.tensors[0]
    flipped = originals.flip(-1)
    matches = [(originals == x).flatten(1).all(1) | (flipped == x).flatten(1).all(1)
               for x in seen]
    assert all(bool(m.any()) for m in matches)


def test_a_bf16_cache_stores_half_precision_and_reads_float32(tmp_path):
    teacher, _ = _models()
    train = _data()
    exact = TeacherCache.build(tmp_path / "fp32", teacher, train, list(PAIRS), batch_size=16)
    half = TeacherCache.build(tmp_path / "bf16", teacher, train, list(PAIRS), batch_size=16,
                              precision="bf16")
    assert exact.logits.dtype == np.float32 and half.logits.dtype == np.float16
    assert all(f.dtype == np.float16 for f in half.features.values())
    _, _, cached = next(half.batches(8, torch.Generator().manual_seed(0)))
    assert cached.logits.dtype == torch.float32
    assert all(f.dtype == torch.float32 for f in cached.features.values())
    # bf16 autocast rounds the teacher's outputs more coarsely than float16 storage does
    torch.testing.assert_close(torch.from_numpy(half.logits[:].astype(np.float32)),
                               torch.from_numpy(np.array(exact.logits)), rtol=0.05, atol=0.05)


def test_outputs_beyond_float16_are_refused_in_a_bf16_cache(tmp_path):
    teacher, _ = _models()
    with torch.no_grad():
        teacher.head.weight.mul_(1e6)
    with pytest.raises(DataError, match="beyond float16"):
        TeacherCache.build(tmp_path, teacher, _data(), [], precision="bf16")
    assert not list(tmp_path.glob("[!.]*"))  # nothing half-written under the cache's name


def test_augmentation_without_copies_is_refused():
    with pytest.raises(ConfigError, match="cache_copies"):
        TrainConfig(teacher_cache="cache", augment="crop")



def _bases_tensors(path):
    from safetensors.torch import load_file
    return load_file(path)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_teacher_pass_builds_the_cache_and_fits_the_bases(tmp_path, monkeypatch, precision):
    # with a cache to build, the cache's forward over the original images feeds the fit, which
    # then makes no pass of its own; the bases equal those of a run without a cache
    settings = dict(method="subdistill", pairs=PAIRS, epochs=1, batch_size=8, eval_batch_size=16,
                    progress=False, precision=precision, augment="crop-flip", cache_copies=2)
    teacher, student = _models()
    alone = distill(teacher, student, _data(), _data(24, 1), run_dir=tmp_path / "alone",
                    **settings)
    from subdistill.subspace.fit import SubspaceStatistics

    def fail(*args, **kwargs):
        raise AssertionError("the fit made a teacher pass of its own")

    monkeypatch.setattr(SubspaceStatistics, "feed", fail)
    teacher, student = _models()
    joint = distill(teacher, student, _data(), _data(24, 1), run_dir=tmp_path / "joint",
                    teacher_cache=str(tmp_path / "cache"), **settings)
    a, b = (_bases_tensors(tmp_path / run / "bases.safetensors") for run in ("alone", "joint"))
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-9, msg=key)
    assert joint.history and alone.history


def test_a_cache_on_disk_leaves_the_fit_its_own_pass(tmp_path):
    teacher, _ = _models()
    TeacherCache.build(tmp_path, teacher, _data(), list(PAIRS), batch_size=16)
    from subdistill.subspace.fit import SubspaceStatistics, fit_subspaces, solve_bases
    stats = SubspaceStatistics(list(PAIRS), positions=None)
    again = TeacherCache.build(tmp_path, teacher, _data(), list(PAIRS), batch_size=16,
                               statistics=stats)
    assert not again.fed_statistics and not stats.entries
    fresh = TeacherCache.build(tmp_path / "new", teacher, _data(), list(PAIRS), batch_size=16,
                               statistics=stats)
    assert fresh.fed_statistics
    fed = solve_bases(stats.result(), {k: 2 for k in PAIRS})
    loader = torch.utils.data.DataLoader(_data(), batch_size=16)
    own = fit_subspaces(teacher, loader, {k: 2 for k in PAIRS}, positions=None)
    for layer in PAIRS:
        torch.testing.assert_close(fed[layer].U, own[layer].U, rtol=1e-6, atol=1e-9)
