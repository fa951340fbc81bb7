"""Label sets: the built-in ScanNet-20 mapping and user-defined YAML sets."""

from __future__ import annotations

import numpy as np
import pytest

from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.labels import NYU40_NAMES, LabelSetError, available_label_sets, load_label_set

SCANNET20 = (
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "desk",
    "curtain",
    "refrigerator",
    "shower curtain",
    "toilet",
    "sink",
    "bathtub",
    "otherfurniture",
)
SCANNET20_NYU40 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)


def test_scannet20_classes_and_nyu40_mapping():
    labels = load_label_set("scannet20")
    assert "scannet20" in available_label_sets()
    assert labels.class_names == SCANNET20 and labels.num_classes == 20
    source = np.arange(0, 42)
    mapped = labels.map_source(source)
    expected = np.full(42, IGNORE_LABEL)
    expected[list(SCANNET20_NYU40)] = np.arange(20)
    assert mapped.tolist() == expected.tolist()
    assert mapped[NYU40_NAMES.index("ceiling")] == IGNORE_LABEL
    assert labels.map_source(np.array([[65535, -1]])).tolist() == [[IGNORE_LABEL, IGNORE_LABEL]]
    # The ScanNet-20 classes carry their NYU40 names.
    assert tuple(NYU40_NAMES[nyu] for nyu in SCANNET20_NYU40) == SCANNET20


def test_colorize_and_palette():
    labels = load_label_set()
    image = labels.colorize(np.array([[0, 1], [IGNORE_LABEL, 19]], np.uint8))
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == labels.colors_rgb[0] and tuple(image[1, 0]) == (0, 0, 0)


def test_user_label_set_from_a_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nsource: nyu40\nclasses:\n"
        "  - {name: structure, color: [200, 200, 200], source_ids: [1, 2, 22]}\n"
        "  - {name: furniture, color: [0, 0, 255], source_ids: [3, 4, 5, 6, 7]}\n"
    )
    labels = load_label_set(path)
    assert labels.class_names == ("structure", "furniture")
    assert labels.map_source(np.array([22, 5, 9])).tolist() == [0, 1, IGNORE_LABEL]
    assert labels.id_of("furniture") == 1
    with pytest.raises(ValueError, match="no class 'lamp'"):
        labels.id_of("lamp")


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: x\nclasses:\n  - {name: a, color: [1, 2, 3], ids: [1]}\n", "unknown key"),
        (
            "name: x\nclasses:\n  - {name: a, color: [1, 2, 3], source_ids: [1]}\n"
            "  - {name: b, color: [1, 2, 3], source_ids: [1]}\n",
            "mapped to two classes",
        ),
        ("name: x\nclasses:\n  - {name: a, color: [1, 2, 300]}\n", "colour must be"),
        ("name: x\nclasses: []\n", "no classes"),
    ],
)
def test_invalid_label_set_names_the_file(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(LabelSetError, match=message) as info:
        load_label_set(path)
    assert "bad.yaml" in str(info.value)


def test_unknown_label_set_name():
    with pytest.raises(LabelSetError, match="no label set named 'nope'.*scannet20"):
        load_label_set("nope")


def test_explicit_class_ids_must_match_their_position(tmp_path):
    from gs4_slam.labels import LabelSetError, load_label_set

    path = tmp_path / "bad_ids.yaml"
    path.write_text("name: bad\nclasses:\n  - {name: a, id: 1, color: [0, 0, 0]}\n  - {name: b, id: 0, color: [1, 1, 1]}\n")
    with pytest.raises(LabelSetError, match="position"):
        load_label_set(path)
