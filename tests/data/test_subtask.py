import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from subdistill.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_SUPERCLASSES
from subdistill.data.digits import DIGITS_CLASSES
from subdistill.data.fashion_mnist import FASHION_MNIST_CLASSES
from subdistill.data.subtask import PRESETS, Subtask, list_presets
from subdistill.errors import SubtaskError

# Coarse label of each CIFAR-100 fine label, from the dataset's own meta (fine label order).
CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def test_cifar100_fine_names_are_the_standard_alphabetical_list():
    assert len(CIFAR100_CLASSES) == 100
    assert list(CIFAR100_CLASSES) == sorted(set(CIFAR100_CLASSES))
    assert CIFAR100_CLASSES[4] == "beaver" and CIFAR100_CLASSES[99] == "worm"


def test_cifar100_superclasses_match_the_coarse_labels():
    presets = PRESETS.get("cifar100")
    assert list(presets) == list(CIFAR100_SUPERCLASSES)
    for coarse, (name, classes) in enumerate(presets.items()):
        expected = tuple(i for i, c in enumerate(CIFAR100_COARSE) if c == coarse)
        assert classes == expected, name


def test_aquatic_mammals_preset():
    s = Subtask.resolve("aquatic_mammals", CIFAR100_CLASSES, "cifar100")
    assert s.names == ("beaver", "dolphin", "otter", "seal", "whale")
    assert s.classes == (4, 30, 55, 72, 95)
    assert s.name == "aquatic_mammals"


def test_imagenet_presets_are_the_papers_groups():
    imagenet = PRESETS.get("imagenet")
    assert len(imagenet) == 8
    assert imagenet["retriever"] == (205, 206, 207, 208, 209)
    assert imagenet["bag"] == (414, 636, 728, 748, 797)
    assert all(len(v) == 5 for v in imagenet.values())


def test_small_dataset_presets():
    def names(family, classes, preset):
        return Subtask.resolve(preset, classes, family).names

    assert names("cifar10", CIFAR10_CLASSES, "vehicles") == (
        "airplane", "automobile", "ship", "truck")
    assert names("cifar10", CIFAR10_CLASSES, "pets") == ("cat", "dog")
    assert len(names("cifar10", CIFAR10_CLASSES, "animals")) == 6
    assert names("fashion-mnist", FASHION_MNIST_CLASSES, "tops") == (
        "T-shirt/top", "Pullover", "Coat", "Shirt")
    assert names("fashion-mnist", FASHION_MNIST_CLASSES, "footwear") == (
        "Sandal", "Sneaker", "Ankle boot")
    assert names("digits", DIGITS_CLASSES, "confusable") == ("3", "5", "8", "9")
    assert names("digits", DIGITS_CLASSES, "low") == ("0", "1", "2", "3", "4")


def test_list_presets():
    assert set(list_presets()) == {"cifar100", "imagenet", "cifar10", "fashion-mnist", "digits"}
    assert list_presets("digits") == {"digits": ["confusable", "low"]}
    with pytest.raises(SubtaskError, match="cifar100"):
        list_presets("cifar1000")


def test_classes_are_sorted_with_their_names():
    s = Subtask((9, 3, 5), ("nine", "three", "five"))
    assert s.classes == (3, 5, 9)
    assert s.names == ("three", "five", "nine")
    assert len(s) == 3
    assert s.label_map == {3: 0, 5: 1, 9: 2}


@pytest.mark.parametrize(
    "classes, names, match",
    [
        ((), (), "at least 2"),
        ((3,), ("a",), "at least 2"),
        ((3, 3), ("a", "b"), "more than once"),
        ((-1, 2), ("a", "b"), "negative"),
        ((1, 2), ("a",), "one name per class"),
    ],
)
def test_invalid_subtasks(classes, names, match):
    with pytest.raises(SubtaskError, match=match):
        Subtask(classes, names)


@given(st.lists(st.integers(0, 50), min_size=2, max_size=10, unique=True))
def test_labels_follow_ascending_class_order(classes):
    s = Subtask(tuple(classes), tuple(map(str, classes)))
    assert [s.label_map[c] for c in classes] == [sorted(classes).index(c) for c in classes]


def test_resolve_lists_and_strings():
    by_index = Subtask.resolve([5, 3], CIFAR10_CLASSES)
    assert by_index.classes == (3, 5) and by_index.names == ("cat", "dog")
    assert by_index.name == "custom"
    assert Subtask.resolve(["Dog", "cat"], CIFAR10_CLASSES) == by_index
    assert Subtask.resolve("dog, 3", CIFAR10_CLASSES) == by_index
    assert Subtask.resolve([np.int64(3), 5], CIFAR10_CLASSES) == by_index
    assert Subtask.resolve(by_index, CIFAR10_CLASSES) == by_index


def test_resolve_errors():
    with pytest.raises(SubtaskError, match=r"0\.\.9"):
        Subtask.resolve([3, 10], CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match=r"0\.\.9"):
        Subtask.resolve([-1, 3], CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match="Did you mean 'pets'"):
        Subtask.resolve("pet", CIFAR10_CLASSES, "cifar10")
    with pytest.raises(SubtaskError, match="Did you mean 'horse'"):
        Subtask.resolve(["cat", "hors"], CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match="unknown preset family"):
        Subtask.resolve("pets", CIFAR10_CLASSES)  # no family
    with pytest.raises(SubtaskError, match="ambiguous"):
        Subtask.resolve(["crane", "cat"], ["crane", "cat", "crane"])
    with pytest.raises(SubtaskError, match="at least 2"):
        Subtask.resolve([], CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match="more than once"):
        Subtask.resolve(["cat", 3], CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match="out of range"):
        Subtask.resolve("retriever", [f"c{i}" for i in range(10)], "imagenet")


def test_resolve_indices_without_class_names():
    subtask = Subtask.resolve([8, 3, 5])
    assert subtask.classes == (3, 5, 8) and subtask.names == ("3", "5", "8")
    assert Subtask.resolve("5,3", None) == Subtask((3, 5), ("3", "5"))
    assert Subtask.resolve("confusable", None, "digits").names == ("3", "5", "8", "9")
    for spec, match in [(["cat", 3], "no class names; give class indices"),
                        ([-1, 3], "negative class indices"), ([2.5, 3], "neither a class index"),
                        ([3], "at least 2")]:
        with pytest.raises(SubtaskError, match=match) as err:
            Subtask.resolve(spec)
        assert "\n" not in str(err.value)


def test_a_named_subtask_keeps_its_name():
    subtask = Subtask.resolve({"name": "wildlife", "classes": [7, "cat", 4]}, CIFAR10_CLASSES)
    assert subtask.name == "wildlife" and subtask.classes == (3, 4, 7)
    assert Subtask.resolve({"name": "pair", "classes": "5,3"}).names == ("3", "5")
    with pytest.raises(SubtaskError, match="keys name and classes"):
        Subtask.resolve({"classes": [1, 2]}, CIFAR10_CLASSES)
    with pytest.raises(SubtaskError, match="non-empty text"):
        Subtask.resolve({"name": " ", "classes": [1, 2]}, CIFAR10_CLASSES)
