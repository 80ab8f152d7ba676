"""Point annotations: reading with named problems, writing, masks from points, data sets and evaluation."""

import numpy as np
import pytest
import tifffile

from cerber_model.cli import main
from cerber_model.runtime.datasets import DatasetSpec, PatchSampler, inspect_dataset
from cerber_model.runtime.images import Normalization
from cerber_model.runtime.points import Points, PointsError, read_points, render_mask, write_points
from tests.model.helpers import gaussian_spots

SPOTS = np.array([[20.0, 18.0], [24.0, 60.0], [50.0, 40.0], [75.0, 15.0], [78.0, 64.0]])


def test_read_points_with_sizes_and_extra_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("track_id,row,col,sd_px,area_px\n1,10.5,3,1.5,9\n2,0,0,,4\n\n3,99,79.25,2,12\n")
    points = read_points(path, (100, 80))
    assert np.array_equal(points.centres, [[10.5, 3], [0, 0], [99, 79.25]])
    assert points.sd_px[0] == 1.5 and np.isnan(points.sd_px[1]) and points.sd_px[2] == 2


@pytest.mark.parametrize("text, expected", [
    ("x,y\n1,2\n", ":1: needs the columns row,col (found: x,y)"),
    ("row,col\n1,2\n3,abc\n", ":3: not numeric (row '3', col 'abc')"),
    ("row,col\n1,2\n100,5\n", ":3: (100, 5) is outside the 80 x 100 px image"),
    ("row,col\n1,2\n5,-0.6\n", ":3: (5, -0.6) is outside"),
    ("row,col\n1,2\n7,7\n1.2,2.1\n", ":4: duplicates line 2"),
    ("row,col,sd_px\n1,2,0\n", ":2: sd_px must be positive"),
])
def test_bad_points_files_name_the_file_and_line(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(PointsError) as info:
        read_points(path, (100, 80))
    assert f"{path}{expected}" in str(info.value)


def test_write_then_read_gives_the_same_points(tmp_path):
    points = Points.of([[1.25, 2.5], [30, 40.75]], [np.nan, 2.0])
    path = write_points(points, tmp_path / "a_points.csv")
    back = read_points(path)
    assert np.array_equal(back.centres, points.centres)
    assert np.isnan(back.sd_px[0]) and back.sd_px[1] == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["a_points.csv"]  # no temporary file left


def test_masks_from_points_are_discs_of_the_given_size():
    points = Points.of([[10, 10], [30, 5.5]], [np.nan, 3.0])
    mask = render_mask((40, 20), points, radius=2.0)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    rr, cc = np.indices(mask.shape)
    first = (rr - 10) ** 2 + (cc - 10) ** 2 <= 4
    second = (rr - 30) ** 2 + (cc - 5.5) ** 2 <= 9
    assert np.array_equal(mask > 0, first | second)
    assert first.sum() == 13


def _spots_image(path, seed):
    rng = np.random.default_rng(seed)
    image = gaussian_spots((96, 80), SPOTS, sigma=2.0) * 3000 + rng.normal(500, 60, (96, 80))
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image.astype(np.uint16))


def _points_dataset(root):
    for split, seed in (("train", 1), ("val", 2)):
        _spots_image(root / split / "images" / "a.tif", seed)
        (root / split / "points").mkdir(parents=True)
        write_points(Points.of(SPOTS), root / split / "points" / "a.csv")


def test_a_data_set_of_points_only(tmp_path):
    _points_dataset(tmp_path)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path))
    assert report.ok, report.summary()
    assert len(report.train) == len(report.val) == 1 and report.points == 10
    assert report.train[0].mask is None and report.train[0].points.name == "a.csv"
    assert report.track_pixels == 2 * 5 * 13  # discs of radius 2 around integer centres


def test_bad_points_stop_training_with_file_and_line(tmp_path):
    _points_dataset(tmp_path)
    (tmp_path / "train" / "points" / "a.csv").write_text("row,col\n20,18\n20,oops\n500,3\n")
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path))
    assert not report.ok
    text = report.summary()
    assert "a.csv: line 3: not numeric" in text and "a.csv: line 4: (500, 3) is outside the 80 x 96 px image" in text


def test_points_beside_the_images_and_unannotated_images(tmp_path):
    images = tmp_path / "annotated"
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        _spots_image(images / f"{name}.tif", seed)
    write_points(Points.of(SPOTS), images / "a_points.csv")
    write_points(Points.of(SPOTS[:3]), images / "b_points.csv")
    report = inspect_dataset(DatasetSpec(images, val_fraction=0.5, seed=1))
    assert report.ok, report.summary()
    assert sorted(p.image.name for p in report.train + report.val) == ["a.tif", "b.tif"]
    assert [p.name for p in report.unannotated] == ["c.tif"] and "c.tif" in report.summary()
    report = inspect_dataset(DatasetSpec(tmp_path / "empty_or_missing"))
    assert not report.ok


def test_patches_from_points_carry_their_discs(tmp_path):
    _points_dataset(tmp_path)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path, point_radius=3.0))
    sampler = PatchSampler(report.train, Normalization(), patch=96, track_bias=0.0,
                           point_radius=report.point_radius)
    image, mask = sampler.cache.get(report.train[0])[:2]
    assert np.array_equal(mask, render_mask((96, 80), Points.of(SPOTS), 3.0) > 0)


def test_evaluate_scores_against_points(tmp_path, capsys):
    _points_dataset(tmp_path)
    assert main(["evaluate", "default", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    overall = next(line for line in out.splitlines() if line.startswith("OVERALL") and "cerber" in line)
    assert overall.split()[2:5] == ["1.000", "1.000", "1.000"]  # P, R, F1 on the five spots
    # A smallest contrast no spot reaches: the model finds none (the LoG is unchanged).
    assert main(["evaluate", "default", str(tmp_path), "--quiet", "--min-contrast", "1e6"]) == 0
    out = capsys.readouterr().out
    overall = next(line for line in out.splitlines() if line.startswith("OVERALL") and "cerber" in line)
    assert overall.split()[3] == "0.000"  # recall


def test_a_crop_keeps_the_points_whose_pixel_it_holds_in_its_own_coordinates():
    points = Points.of([(9.4, 20.0), (9.6, 20.0), (19.4, 25.0), (19.6, 25.0), (15.0, 9.0)], [1.0, 2.0, 3.0, 4.0, 5.0])
    block = points.crop(slice(10, 20), slice(10, 30))  # rows 10-19 hold 9.5 <= r < 19.5
    np.testing.assert_allclose(block.centres, [(-0.4, 10.0), (9.4, 15.0)])
    np.testing.assert_array_equal(block.sd_px, [2.0, 3.0])
    assert len(points.crop(slice(0, 5), slice(0, 5))) == 0
