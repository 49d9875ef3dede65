"""The segmentation example (reactor.examples.segment) with its real MediaPipe model, on a
real portrait: matplotlib's sample photograph of Grace Hopper (matplotlib comes with
MediaPipe, so the picture is there whenever the model is). The model runs only where
``reactor-live[segment]`` is installed (`make test-segment`); elsewhere those tests skip and
the error a user gets without the extra is checked."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from reactor import ModelLoadError
from reactor.config import load_config
from reactor.examples.segment import SelfieSegment
from reactor.testing import ModelRunner

# The portrait is 512x600: the person fills the middle, the corners are background.
W, H = 512, 600
PERSON = (slice(H // 3, 2 * H // 3), slice(W // 3, 2 * W // 3))
CORNER = (slice(0, H // 8), slice(0, W // 8))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    pytest.importorskip("mediapipe", reason='needs pip install "reactor-live[segment]"')
    cbook = pytest.importorskip("matplotlib.cbook")
    import cv2

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (H, W, 3)
    return rgb


def runner(**args: object) -> ModelRunner:
    return ModelRunner(SelfieSegment, width=W, height=H, args={"model": "general", **args})


def test_the_mask_covers_the_person_and_not_the_background(portrait: np.ndarray) -> None:
    r = runner(background="mask")
    (out,) = r.run(inputs=[portrait])
    model = r.model
    assert isinstance(model, SelfieSegment)
    mask = model.mask
    assert mask is not None and mask.shape == (H, W) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert mask[PERSON].mean() > 0.9 and mask[CORNER].mean() < 0.05
    # mask mode shows it: white on the person, black around
    assert out[PERSON].mean() > 230 and out[CORNER].max() < 20
    # A black frame has no person in it.
    (black,) = r.run(inputs=[np.zeros_like(portrait)])
    assert model.mask is not None and model.mask.max() < 0.05 and black.max() < 20


def test_set_background_replaces_the_background_from_the_next_frame(
    portrait: np.ndarray,
) -> None:
    out = runner(background="blur").run(
        inputs=[portrait] * 3,
        commands={1: ("set_background", {"mode": "color", "r": 255, "g": 0, "b": 0}),
                  2: ("set_background", {"mode": "off"})})
    # frame 1 and on: the corners are the colour asked for, the person is still the photo
    assert np.abs(out[1][CORNER].astype(int) - (255, 0, 0)).max() <= 2
    person = np.abs(out[1][PERSON].astype(int) - portrait[PERSON]).mean()
    assert person < 10, person
    # frame 0 was still blurred: its corner is neither the colour nor the photo's own
    assert np.abs(out[0][CORNER].astype(int) - (255, 0, 0)).max() > 100
    assert np.array_equal(out[2], portrait)  # off: the camera as it came


def test_set_blur_blurs_the_background_more_and_leaves_the_person(
    portrait: np.ndarray,
) -> None:
    out = runner(background="blur").run(
        inputs=[portrait] * 2, commands={1: ("set_blur", {"strength": 40})})

    def detail(img: np.ndarray) -> float:  # mean step between neighbouring pixels
        return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())

    # The background loses its detail, more with the stronger blur ...
    assert detail(out[0][CORNER]) < detail(portrait[CORNER]) * 0.7
    assert detail(out[1][CORNER]) < detail(out[0][CORNER])
    # ... and the person keeps theirs.
    assert detail(out[1][PERSON]) > detail(portrait[PERSON]) * 0.8


def test_without_the_extra_load_names_the_pip_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if it were not installed (a None entry makes its import raise ImportError), also
    # where an earlier test imported it.
    for name in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelLoadError, match=r'pip install "reactor-live\[segment\]"'):
        SelfieSegment().load({})


def test_an_unknown_model_arg_names_the_choices() -> None:
    pytest.importorskip("mediapipe", reason='needs pip install "reactor-live[segment]"')
    with pytest.raises(ModelLoadError, match=r"model.args.model: expected one of general, "
                                             r"landscape, found 'tiny'"):
        SelfieSegment().load({"model": "tiny"})


def test_the_packaged_config_names_the_model() -> None:
    config = load_config("segment")
    assert config.model_class() is SelfieSegment
    assert (config.video.width, config.video.height) == (1280, 720)
