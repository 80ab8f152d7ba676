"""Folders as a pipeline: the overlapped stages give what one image at a time gives."""

import numpy as np
import pytest
import tifffile

from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.batch import BatchSettings, analyze_file, analyze_files
from cerber_model.runtime.bundle import save_bundle
from cerber_model.runtime.images import ImageReadError, read_image
from tests.model.helpers import gaussian_spots, tiny_bundle

SPOTS = np.array([[20, 18], [24, 60], [50, 40], [75, 15], [78, 64]], float)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from cerber_model.runtime.bundle import load_bundle

    return load_bundle(save_bundle(tiny_bundle(width=1, seed=2), tmp_path_factory.mktemp("m") / "tiny"))


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    paths = []
    for i in range(4):
        spots = gaussian_spots((96, 80), SPOTS + i, sigma=2.0)
        path = folder / f"img{i}.tif"
        tifffile.imwrite(path, (spots * 3000 + rng.normal(500, 60, spots.shape)).astype(np.uint16))
        paths.append(path)
    (folder / "img1.tif").write_bytes(b"II*\x00 damaged")  # the second one cannot be read
    return paths


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_pipelined_folder_equals_one_image_at_a_time(bundle, images, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir(), many.mkdir()
    settings = dict(save_probability=True, save_overlay=True, save_rois=True, save_napari=True, keep_tracks=True)
    items = [(p, p.stem) for p in images]

    outcomes = list(analyze_files(items, BatchSettings(many, **settings), bundle))
    assert [o.item for o in outcomes] == items
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1].error, ImageReadError) and "img1.tif" in str(outcomes[1].error)

    for path in (images[0], images[2], images[3]):
        alone = analyze_file(path, path.stem, BatchSettings(one, **settings), bundle)
        piped = next(o.value for o in outcomes if o.item[0] == path)
        assert alone.summary == piped.summary and alone.line == piped.line
        # And what analyze() finds for that image, the API every front end uses.
        direct = analyze(read_image(path), bundle)
        assert piped.summary["track_count"] == direct.tracks.count
        np.testing.assert_array_equal(piped.tracks.columns["row"], direct.tracks.columns["row"])
    assert _files(one) == _files(many)
    assert len(_files(many)) == 3 * 5  # tracks, probability, overlay, ROI set, napari points per good image


def test_settings_list_the_files_an_image_gets(tmp_path):
    settings = BatchSettings(tmp_path, save_overlay=True, save_rois=True)
    assert [p.name for p in settings.outputs("a")] == ["a_tracks.csv", "a_overlay.png", "a_rois.zip"]
