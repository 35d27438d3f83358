"""Datasets on tiny fixtures written in each real on-disk layout; ids and mappings are checked pixel by pixel.

Expected train ids are written out here by hand from METHOD.md section 7.1 and the CamVid README, independently of
tqdm_core.data.label_mappings.
"""
from pathlib import Path
import re

import numpy as np
import pytest
from PIL import Image

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.data import (
    BDD100KDataset,
    CamVidDataset,
    CityscapesDataset,
    GTA5Dataset,
    ImageFolderDataset,
    MapillaryVistasDataset,
    build_dataset,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# Cityscapes label id -> train id; every other id in 0..255 is ignore.
CITYSCAPES_EXPECTED = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_palette_label(path: Path, ids: np.ndarray) -> None:
    """A palette PNG whose index is the class id, as GTA5 and Mapillary ship their labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = Image.fromarray(ids.astype(np.uint8), mode="P")
    label.putpalette([value for index in range(256) for value in (index, 255 - index, (7 * index) % 256)])
    label.save(path)


def all_ids_label() -> np.ndarray:
    """(16, 16) label holding every id 0..255 once."""
    return np.arange(256, dtype=np.uint8).reshape(16, 16)


def expected_from(mapping: dict[int, int], ids: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda value: mapping.get(int(value), 255))(ids).astype(np.uint8)


def image_for(label: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*label.shape, 3), dtype=np.uint8)


# --- Cityscapes -------------------------------------------------------------------------------------------------


def make_cityscapes(root: Path, split: str = "val", cities: tuple[str, ...] = ("aachen", "bremen")) -> None:
    for number, city in enumerate(cities):
        name = f"{city}_000000_{number:06d}"
        write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image_for(all_ids_label()))
        write_image(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", all_ids_label())


def test_cityscapes_maps_every_label_id_to_its_train_id(tmp_path):
    make_cityscapes(tmp_path)
    dataset = CityscapesDataset(tmp_path, split="val")
    assert len(dataset) == 2 and dataset.class_table is CITYSCAPES_19
    sample = dataset[0]
    assert sample["name"] == "aachen_000000_000000"
    assert sample["image"].shape == (16, 16, 3) and sample["image"].dtype == np.uint8
    assert sample["label"].dtype == np.uint8
    np.testing.assert_array_equal(sample["label"], expected_from(CITYSCAPES_EXPECTED, all_ids_label()))


def test_cityscapes_reads_images_as_rgb_and_prefers_train_id_labels(tmp_path):
    make_cityscapes(tmp_path, cities=("aachen",))
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[..., 0] = 200  # pure red: a BGR/RGB mix-up would make it blue
    write_image(tmp_path / "leftImg8bit/val/aachen/aachen_000000_000000_leftImg8bit.png", image)
    train_ids = np.full((16, 16), 13, dtype=np.uint8)
    write_image(tmp_path / "gtFine/val/aachen/aachen_000000_000000_gtFine_labelTrainIds.png", train_ids)
    sample = CityscapesDataset(tmp_path, split="val")[0]
    np.testing.assert_array_equal(sample["image"], image)
    np.testing.assert_array_equal(sample["label"], train_ids)


def test_cityscapes_wrong_root_and_missing_label_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val/<city>/\*_leftImg8bit\.png"):
        CityscapesDataset(tmp_path, split="val")
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine/val/bremen/bremen_000000_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 2 images have no label file(.|\n)*bremen_000000_000001_gtFine"):
        CityscapesDataset(tmp_path, split="val")
    with pytest.raises(ValueError, match="unknown"):
        CityscapesDataset(tmp_path, split="test")


def test_cityscapes_symlinked_city_folder_is_read(tmp_path):
    # Python < 3.13 globbing skips symlinked folders: a linked city used to vanish from the split without a word.
    make_cityscapes(tmp_path / "store", cities=("bremen",))
    make_cityscapes(tmp_path / "root", cities=("aachen",))
    for kind in ("leftImg8bit", "gtFine"):
        (tmp_path / f"root/{kind}/val/bremen").symlink_to(tmp_path / f"store/{kind}/val/bremen")
    (tmp_path / "root/leftImg8bit/val/aachen/loop").symlink_to(tmp_path / "root/leftImg8bit/val")  # must end
    names = CityscapesDataset(tmp_path / "root", split="val").names()
    assert names == ["aachen_000000_000000", "bremen_000000_000000"]


def test_cityscapes_zip_folder_layout(tmp_path):
    make_cityscapes(tmp_path / "zips")
    (tmp_path / "leftImg8bit_trainvaltest").mkdir()
    (tmp_path / "gtFine_trainvaltest").mkdir()
    (tmp_path / "zips/leftImg8bit").rename(tmp_path / "leftImg8bit_trainvaltest/leftImg8bit")
    (tmp_path / "zips/gtFine").rename(tmp_path / "gtFine_trainvaltest/gtFine")
    dataset = CityscapesDataset(tmp_path, split="val")
    assert dataset.names() == ["aachen_000000_000000", "bremen_000000_000001"]
    np.testing.assert_array_equal(dataset[0]["label"], expected_from(CITYSCAPES_EXPECTED, all_ids_label()))
    (tmp_path / "gtFine_trainvaltest/gtFine/val/aachen/aachen_000000_000000_gtFine_labelIds.png").unlink()
    with pytest.raises(ValueError, match=r"no label file(.|\n)*gtFine_trainvaltest/gtFine/"):
        CityscapesDataset(tmp_path, split="val")


# --- GTA5 -------------------------------------------------------------------------------------------------------


def make_gta_flat(root: Path, names: tuple[str, ...]) -> None:
    for name in names:
        write_image(root / "images" / f"{name}.png", image_for(all_ids_label()))
        write_palette_label(root / "labels" / f"{name}.png", all_ids_label())


def test_gta5_flat_layout_all_split_maps_palette_ids(tmp_path):
    make_gta_flat(tmp_path, ("00001", "00002", "00003"))
    dataset = GTA5Dataset(tmp_path, split="all")
    assert dataset.names() == ["00001", "00002", "00003"]
    np.testing.assert_array_equal(dataset[1]["label"], expected_from(CITYSCAPES_EXPECTED, all_ids_label()))
    np.testing.assert_array_equal(dataset.load_label(2), dataset[2]["label"])


def test_gta5_split_file_selects_the_listed_images(tmp_path):
    make_gta_flat(tmp_path, ("00001", "00002", "00003"))
    (tmp_path / "gtav_split_val.txt").write_text("00003.png\n00001.png\n")
    assert GTA5Dataset(tmp_path, split="val").names() == ["00003", "00001"]
    custom = tmp_path / "mine.txt"
    custom.write_text("00002.png\n")
    assert GTA5Dataset(tmp_path, split="train", split_file=custom).names() == ["00002"]
    with pytest.raises(FileNotFoundError, match=r"gtav_split_train\.txt(.|\n)*images/train"):
        GTA5Dataset(tmp_path, split="train")


@pytest.mark.parametrize("nested", ["", "folder/"], ids=["tldr", "robustnet"])
def test_gta5_split_folder_layouts_and_train_id_labels(tmp_path, nested):
    for split, name in (("train", "00001"), ("valid", "00002")):
        write_image(tmp_path / f"images/{split}/{nested}{name}.png", image_for(all_ids_label()))
        write_palette_label(tmp_path / f"labels/{split}/{nested}{name}.png", all_ids_label())
    # TLDR's converter writes *_labelTrainIds.png next to the raw label; it takes precedence.
    write_image(tmp_path / f"labels/valid/{nested}00002_labelTrainIds.png", np.full((16, 16), 5, np.uint8))
    train = GTA5Dataset(tmp_path, split="train")
    assert train.names() == ["00001"]
    np.testing.assert_array_equal(train[0]["label"], expected_from(CITYSCAPES_EXPECTED, all_ids_label()))
    val = GTA5Dataset(tmp_path, split="val")
    assert val.names() == ["00002"] and np.all(val[0]["label"] == 5)
    assert GTA5Dataset(tmp_path, split="all").names() == ["00001", "00002"]


def test_gta5_resizes_an_image_whose_size_differs_from_its_label_and_names_both(tmp_path):
    """The label is kept as it is (scored exactly), the image resized to it; this used to happen silently."""
    make_gta_flat(tmp_path, ("00001",))
    write_image(tmp_path / "images/00001.png", np.zeros((20, 24, 3), np.uint8))
    expected = (f"image '{tmp_path / 'images/00001.png'}' is 24x20 but its label '{tmp_path / 'labels/00001.png'}' "
                "is 16x16; the image is resized to the label's size")
    with pytest.warns(UserWarning, match=re.escape(expected)):
        sample = GTA5Dataset(tmp_path, split="all")[0]
    assert sample["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(sample["label"], expected_from(CITYSCAPES_EXPECTED, all_ids_label()))


def test_other_datasets_refuse_an_image_whose_size_differs_from_its_label(tmp_path):
    make_cityscapes(tmp_path, cities=("aachen",))
    image = tmp_path / "leftImg8bit/val/aachen/aachen_000000_000000_leftImg8bit.png"
    write_image(image, np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape(f"image '{image}' is 24x20 but its label '") + r".*is 16x16; image "
                       r"and label must have the same size"):
        CityscapesDataset(tmp_path, split="val")[0]


def test_gta5_errors_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images/train/\*\*/\*\.png"):
        GTA5Dataset(tmp_path / "nowhere", split="train")
    make_gta_flat(tmp_path, ("00001",))
    (tmp_path / "labels/00001.png").unlink()
    with pytest.raises(ValueError, match=r"no label file(.|\n)*labels/00001\.png"):
        GTA5Dataset(tmp_path, split="all")


def test_gta5_all_split_reads_each_frame_once_and_names_its_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        GTA5Dataset(tmp_path, split="all")
    assert "gtav_split_all" not in str(error.value) and "images/**/*.png" in str(error.value)
    make_gta_flat(tmp_path, ("00001", "00002"))
    # split folders made beside the flat files, as links: each frame is there twice
    for split, name in (("train", "00001"), ("valid", "00002")):
        for kind in ("images", "labels"):
            (tmp_path / kind / split).mkdir(exist_ok=True)
            (tmp_path / kind / split / f"{name}.png").symlink_to(tmp_path / kind / f"{name}.png")
    with pytest.warns(UserWarning, match="2 images share a file name"):
        dataset = GTA5Dataset(tmp_path, split="all")
    assert dataset.names() == ["00001", "00002"]


# --- BDD100K ----------------------------------------------------------------------------------------------------


def test_bdd100k_official_masks_are_train_ids(tmp_path):
    label = all_ids_label()
    write_image(tmp_path / "images/10k/val/7d2f7975-e0c1c5a7.jpg", image_for(label))
    write_image(tmp_path / "labels/sem_seg/masks/val/7d2f7975-e0c1c5a7.png", label)
    sample = BDD100KDataset(tmp_path, split="val")[0]
    assert sample["name"] == "7d2f7975-e0c1c5a7" and sample["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(sample["label"], np.where(label < 19, label, 255))


def test_bdd100k_colormaps_train_id_variant_and_colour_label_error(tmp_path):
    label = np.full((8, 8), 10, np.uint8)
    write_image(tmp_path / "images/10k/val/a.jpg", image_for(label))
    write_image(tmp_path / "labels/sem_seg/colormaps/val/a_labelTrainIds.png", label)
    np.testing.assert_array_equal(BDD100KDataset(tmp_path, split="val")[0]["label"], label)

    write_image(tmp_path / "labels/sem_seg/masks/val/a.png", image_for(label))  # an RGB image where ids belong
    with pytest.raises(ValueError, match="colour image"):
        BDD100KDataset(tmp_path, split="val")[0]


def test_bdd100k_missing_folder_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images/10k/val/\*\.jpg with <root>/labels/sem_seg/masks/val"):
        BDD100KDataset(tmp_path, split="val")


@pytest.mark.parametrize("images, labels", [("images/{split}", "labels/{split}"),
                                             ("seg/images/{split}", "seg/labels/{split}")], ids=["older", "seg"])
def test_bdd100k_older_layouts_with_train_id_suffix(tmp_path, images, labels):
    label = np.full((8, 8), 7, np.uint8)
    write_image(tmp_path / images.format(split="train") / "b.jpg", image_for(label))
    write_image(tmp_path / labels.format(split="train") / "b_train_id.png", label)
    np.testing.assert_array_equal(BDD100KDataset(tmp_path, split="train")[0]["label"], label)


def test_bdd100k_images_without_masks_point_to_the_fixed_zips(tmp_path):
    label = np.full((8, 8), 1, np.uint8)
    for name in ("a", "b"):
        write_image(tmp_path / f"images/10k/train/{name}.jpg", image_for(label))
    write_image(tmp_path / "labels/sem_seg/masks/train/a.png", label)
    with pytest.raises(ValueError, match=r"1 of 2 images have no label file(.|\n)*before June 2021"):
        BDD100KDataset(tmp_path, split="train")


# --- Mapillary Vistas -------------------------------------------------------------------------------------------

# Vistas v1.2 class index -> Cityscapes train id, by the names of config_v1.2.json.
MAPILLARY_EXPECTED = {
    13: 0,   # Road
    24: 0,   # Lane Marking - General
    41: 0,   # Manhole
    2: 1,    # Curb
    15: 1,   # Sidewalk
    17: 2,   # Building
    6: 3,    # Wall
    3: 4,    # Fence
    45: 5,   # Pole
    47: 5,   # Utility Pole
    48: 6,   # Traffic Light
    50: 7,   # Traffic Sign (Front)
    30: 8,   # Vegetation
    29: 9,   # Terrain
    27: 10,  # Sky
    19: 11,  # Person
    20: 12,  # Bicyclist
    21: 12,  # Motorcyclist
    22: 12,  # Other Rider
    55: 13,  # Car
    61: 14,  # Truck
    54: 15,  # Bus
    58: 16,  # On Rails
    57: 17,  # Motorcycle
    52: 18,  # Bicycle
}


def test_mapillary_v12_labels_map_66_classes_to_19(tmp_path):
    label = all_ids_label()
    write_image(tmp_path / "validation/images/abc.jpg", image_for(label))
    write_palette_label(tmp_path / "validation/v1.2/labels/abc.png", label)
    sample = MapillaryVistasDataset(tmp_path, split="val")[0]
    np.testing.assert_array_equal(sample["label"], expected_from(MAPILLARY_EXPECTED, label))
    assert sample["label"][24 // 16, 24 % 16] == CITYSCAPES_19.names.index("road")  # Lane Marking - General
    assert sample["label"][49 // 16, 49 % 16] == 255  # Traffic Sign (Back) has no Cityscapes class
    assert sample["label"][64 // 16, 64 % 16] == 255  # Ego Vehicle


def test_mapillary_older_layout_and_train_id_labels(tmp_path):
    label = np.array([[13, 24], [55, 64]], np.uint8)
    write_image(tmp_path / "training/images/a.jpg", image_for(label))
    write_palette_label(tmp_path / "training/labels/a.png", label)
    write_image(tmp_path / "training/images/b.jpg", image_for(label))
    write_image(tmp_path / "training/labels/b_labelTrainIds.png", np.array([[1, 2], [3, 255]], np.uint8))
    dataset = MapillaryVistasDataset(tmp_path, split="train")
    np.testing.assert_array_equal(dataset[0]["label"], [[0, 0], [13, 255]])
    np.testing.assert_array_equal(dataset[1]["label"], [[1, 2], [3, 255]])
    with pytest.raises(FileNotFoundError, match=r"validation/images/\*\.jpg with <root>/validation/v1\.2/labels"):
        MapillaryVistasDataset(tmp_path, split="val")


def test_mapillary_converted_train_ids_win_over_the_raw_labels(tmp_path):
    label = np.array([[13, 24], [55, 64]], np.uint8)
    write_image(tmp_path / "validation/images/a.jpg", image_for(label))
    write_palette_label(tmp_path / "validation/v1.2/labels/a.png", label)
    write_image(tmp_path / "validation/labels/a_labelTrainIds.png", np.array([[1, 1], [13, 255]], np.uint8))
    np.testing.assert_array_equal(MapillaryVistasDataset(tmp_path, split="val")[0]["label"], [[1, 1], [13, 255]])


# --- CamVid -----------------------------------------------------------------------------------------------------

CAMVID_TO_CITYSCAPES_EXPECTED = {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 12}


def make_camvid(root: Path, split: str = "val", names: tuple[str, ...] = ("0016E5_00001", "0016E5_00002")) -> None:
    label = np.arange(12, dtype=np.uint8).repeat(2).reshape(4, 6)  # ids 0..11, 11 = void
    lines = []
    for name in names:
        write_image(root / split / f"{name}.png", image_for(label))
        write_image(root / f"{split}annot" / f"{name}.png", label)
        lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def test_camvid_own_classes_keep_ids_and_void_is_ignored(tmp_path):
    make_camvid(tmp_path)
    dataset = CamVidDataset(tmp_path, split="val", classes="camvid11")
    assert dataset.class_table is CAMVID_11 and dataset.names() == ["0016E5_00001", "0016E5_00002"]
    label = dataset[0]["label"]
    np.testing.assert_array_equal(label, np.where(np.arange(12).repeat(2).reshape(4, 6) == 11, 255,
                                                  np.arange(12).repeat(2).reshape(4, 6)))


def test_camvid_cityscapes_classes(tmp_path):
    make_camvid(tmp_path)
    dataset = CamVidDataset(tmp_path, split="val", classes="cityscapes19")
    assert dataset.class_table is CITYSCAPES_19
    raw = np.arange(12, dtype=np.uint8).repeat(2).reshape(4, 6)
    np.testing.assert_array_equal(dataset[1]["label"], expected_from(CAMVID_TO_CITYSCAPES_EXPECTED, raw))
    assert dataset[1]["label"][raw == 5][0] == CITYSCAPES_19.names.index("vegetation")  # tree


def test_camvid_without_list_file_and_errors(tmp_path):
    make_camvid(tmp_path, split="train")
    (tmp_path / "train.txt").unlink()
    assert len(CamVidDataset(tmp_path, split="train")) == 2
    with pytest.raises(FileNotFoundError, match=r"<root>/val/\*\.png with labels <root>/valannot/\*\.png"):
        CamVidDataset(tmp_path, split="val")
    with pytest.raises(ValueError, match="classes"):
        CamVidDataset(tmp_path, split="train", classes="voc")


def test_committed_camvid_sample_frames_load():
    dataset = CamVidDataset(REPO_ROOT / "data" / "camvid_sample", split="val")
    assert len(dataset) == 6
    assert (REPO_ROOT / "data/camvid_sample/ATTRIBUTION.md").is_file()
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (360, 480, 3) and sample["label"].shape == (360, 480)
        present = set(np.unique(sample["label"]).tolist())
        assert present <= set(range(11)) | {255} and len(present - {255}) >= 8  # real driving scenes
    mapped = CamVidDataset(REPO_ROOT / "data" / "camvid_sample", split="val", classes="cityscapes19")
    road = dataset.class_table.names.index("road")
    np.testing.assert_array_equal(mapped[0]["label"] == 0, dataset[0]["label"] == road)


# --- generic folder and registry --------------------------------------------------------------------------------


def test_image_folder_pairs_by_stem_with_mapping(tmp_path):
    label = np.array([[0, 1], [2, 3]], np.uint8)
    write_image(tmp_path / "images/train/frame_1.jpg", image_for(label))
    write_image(tmp_path / "labels/train/frame_1_mask.png", label)
    dataset = ImageFolderDataset(tmp_path, split="train", label_suffix="_mask", class_table=CAMVID_11,
                                 id_to_train_id={1: 3, 2: 3})
    np.testing.assert_array_equal(dataset[0]["label"], [[255, 3], [3, 255]])
    identity = ImageFolderDataset(tmp_path, split="train", label_suffix="_mask")
    np.testing.assert_array_equal(identity[0]["label"], label)

    write_image(tmp_path / "images/train/frame_2.png", image_for(label))
    with pytest.raises(ValueError, match=r"1 of 2 images have no label(.|\n)*frame_2_mask\.png"):
        ImageFolderDataset(tmp_path, split="train", label_suffix="_mask")
    with pytest.raises(ValueError, match="only 11 classes"):
        ImageFolderDataset(tmp_path, split="train", class_table=CAMVID_11, id_to_train_id={1: 12})


def test_a_jpeg_cut_short_is_refused_not_scored_half_grey(tmp_path):
    """cv2.imread returns the decoded part of a truncated JPEG with grey below it and no error."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    write_image(tmp_path / "images/train/frame_1.jpg", smooth)
    write_image(tmp_path / "labels/train/frame_1.png", np.zeros(smooth.shape[:2], np.uint8))
    dataset = ImageFolderDataset(tmp_path, split="train")
    assert dataset[0]["image"].shape == smooth.shape
    jpeg = tmp_path / "images/train/frame_1.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-200])
    with pytest.raises(ValueError, match=re.escape(f"could not decode image '{jpeg}'; the file is truncated")):
        dataset[0]


def test_build_dataset_by_name(tmp_path):
    make_camvid(tmp_path)
    dataset = build_dataset("camvid", tmp_path, "val", classes="cityscapes19")
    assert isinstance(dataset, CamVidDataset) and dataset.class_table is CITYSCAPES_19
    assert [path.name for path in dataset.label_paths()] == ["0016E5_00001.png", "0016E5_00002.png"]
    with pytest.raises(ValueError, match="registered datasets"):
        build_dataset("kitti", tmp_path, "val")


def test_camvid_trainval_and_sequence_selection(tmp_path):
    make_camvid(tmp_path, split="train", names=("0001TP_000010", "0006R0_000020", "0016E5_000030"))
    make_camvid(tmp_path, split="val", names=("0016E5_000040",))
    both = CamVidDataset(tmp_path, split="trainval")
    assert both.names() == ["0001TP_000010", "0006R0_000020", "0016E5_000030", "0016E5_000040"]
    held_out = CamVidDataset(tmp_path, split="trainval", sequences=["0001TP"])
    rest = CamVidDataset(tmp_path, split="trainval", exclude_sequences=["0001TP"])
    assert held_out.names() == ["0001TP_000010"]
    assert rest.names() == ["0006R0_000020", "0016E5_000030", "0016E5_000040"]
    assert not set(held_out.names()) & set(rest.names())
    with pytest.raises(ValueError, match=r"no frames of sequence\(s\) \['Seq05VD'\]; its sequences are "
                                         r"\['0001TP', '0006R0', '0016E5'\]"):
        CamVidDataset(tmp_path, split="trainval", sequences=["Seq05VD"])
    with pytest.raises(ValueError, match="no CamVid frames left"):
        CamVidDataset(tmp_path, split="val", exclude_sequences=["0016E5"])
