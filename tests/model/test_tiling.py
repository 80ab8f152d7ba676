"""Tiled analysis equals whole-image analysis, reports progress and stops on cancel."""

import numpy as np
import pytest

from cerber_model.runtime.analysis import predict_probability
from cerber_model.runtime.images import Normalization, apply_normalization, normalization_range, normalize
from cerber_model.runtime.progress import Cancelled, CancelToken
from cerber_model.runtime.tiling import DEFAULT_MARGIN, pad_image, plan_tiles
from tests.model.helpers import tiny_bundle


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(width=1, seed=4)


def test_tiles_cover_the_image_exactly_once():
    for shape in [(4, 4), (300, 260), (1000, 124), (1608, 1608)]:
        tiles = plan_tiles(shape, window=256, margin=32)
        cover = np.zeros(shape, int)
        for t in tiles:
            r0, r1, c0, c1 = t.keep
            cover[r0:r1, c0:c1] += 1
            w = t.window
            assert w[0] % 4 == 0 and w[2] % 4 == 0 and (w[1] - w[0]) % 4 == 0
            # The keep region is at least `margin` from any window edge that is not the image edge.
            assert r0 - w[0] >= 32 or w[0] == 0
            assert w[1] - r1 >= 32 or w[1] == shape[0]
        assert (cover == 1).all(), shape
        assert len({(t.window[1] - t.window[0], t.window[3] - t.window[2]) for t in tiles}) == 1


def test_receptive_field_fits_in_the_margin(bundle):
    """A change in one pixel changes the output no further than DEFAULT_MARGIN away."""
    engine = bundle.engine()
    reach = 0
    for pos in (80, 81, 82, 83):  # every phase of the two 2x2 poolings
        x = np.random.default_rng(pos).random((160, 160), dtype=np.float32)
        base = engine.predict(x)
        x[pos, pos] += 5.0
        changed = np.argwhere(engine.predict(x) != base)
        reach = max(reach, int(np.abs(changed - pos).max()))
    assert 8 < reach <= DEFAULT_MARGIN


@pytest.mark.parametrize("norm", [Normalization(), Normalization("background", block=32)], ids=lambda n: n.method)
def test_tiled_probability_equals_whole_image(bundle, norm):
    rng = np.random.default_rng(1)
    rr, cc = np.indices((301, 263))
    image = (rng.random((301, 263)) * 120 + 0.2 * rr + 50 * np.exp(-((cc - 90) ** 2) / 3000)).astype(np.uint8)
    whole = predict_probability(image, bundle.engine(), norm, window=1024)  # one tile
    calls = []
    tiled = predict_probability(image, bundle.engine(), norm, window=128, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 4 and calls[-1][0] == calls[-1][1] == len(calls)
    assert whole.shape == image.shape and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() <= 1e-4
    assert whole.std() > 0.01


class Echo:
    """An engine whose probability map is its input: what comes out must be the image, in place."""

    name = "echo"

    def predict(self, x):
        return x.copy()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (17, 33)])
def test_tiny_images_come_back_in_place(shape):
    image = np.random.default_rng(2).random(shape).astype(np.float32) * 100
    norm = Normalization()
    prob = predict_probability(image, Echo(), norm)
    low, high = normalization_range(image, norm)
    assert prob.shape == shape
    assert np.array_equal(prob, apply_normalization(image, low, high))  # no shift, flip or crop error


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (17, 33), (150, 97)])
def test_background_normalised_padding_reflects_the_normalised_image(shape):
    """With the background normalisation the network sees the normalised image, reflect-padded:
    the same input whether the image is analysed whole or cut into tiles."""
    image = np.random.default_rng(2).normal(500, 30, shape).astype(np.uint16)
    norm = Normalization("background", block=32)
    seen = []

    class Recording(Echo):
        def predict(self, x):
            seen.append(x)
            return x.copy()

    prob = predict_probability(image, Recording(), norm)
    assert np.array_equal(prob, normalize(image, norm))
    padded, (r, c) = pad_image(normalize(image, norm))
    after = (padded.shape[0] - shape[0] - r, padded.shape[1] - shape[1] - c)
    expected = np.pad(normalize(image, norm), ((r, after[0]), (c, after[1])), mode="reflect")
    assert len(seen) == 1 and np.array_equal(seen[0], expected)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (17, 33)])
def test_tiny_images_give_the_networks_map(bundle, shape):
    """The map of a tiny image is the network's output on the padded image, cropped back."""
    image = np.random.default_rng(3).random(shape).astype(np.float32)
    norm = bundle.config.normalization
    prob = predict_probability(image, bundle.engine(), norm)
    low, high = normalization_range(image, norm)
    padded, (r, c) = pad_image(image)
    expected = bundle.engine().predict(apply_normalization(padded, low, high))[r:r + shape[0], c:c + shape[1]]
    assert np.abs(prob - expected).max() <= 1e-6
    assert not np.allclose(prob, prob.flat[0]) or shape == (1, 1)


def test_cancel_stops_between_tiles(bundle):
    token = CancelToken()
    engine = bundle.engine()
    seen = []

    class Counting:
        name = "counting"

        def predict(self, x):
            seen.append(x.shape)
            return engine.predict(x)

    def progress(done, total):
        if done == 2:
            token.cancel()

    image = np.zeros((400, 400), np.float32)
    with pytest.raises(Cancelled):
        predict_probability(image, Counting(), bundle.config.normalization, window=128, progress=progress,
                            cancel=token)
    assert len(seen) == 2  # stopped right after the tile during which Cancel was pressed
    assert len(plan_tiles(pad_image(image)[0].shape, 128, 32)) > 2
