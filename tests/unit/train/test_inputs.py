import io
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from pipeline.train.inputs import InputSpec, input_spec, predict_files, prepare_image


def encoded(mode: str, size: tuple[int, int] = (40, 30)) -> bytes:
    """A PNG whose red band is bright and the others dark, so gray and RGB decodes differ."""
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[..., 0] = 200
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def band_means(channels: int) -> keras.Model:
    """A model that outputs the mean of its first input band: shows what the decode fed it."""
    inputs = keras.Input((24, 24, channels), name="image")
    outputs = keras.layers.Lambda(lambda x: keras.ops.mean(x[..., :1], axis=(1, 2)))(inputs)
    return keras.Model(inputs, outputs)


def test_input_spec_reads_size_and_channels_from_the_model() -> None:
    assert input_spec(band_means(1)) == InputSpec(24, 1)
    assert input_spec(band_means(3)) == InputSpec(24, 3)


@pytest.mark.parametrize("shape", [(24, 32, 1), (24, 24, 2), (None, None, 1), (24,)], ids=str)
def test_input_spec_refuses_inputs_the_decode_cannot_produce(shape: tuple) -> None:
    model = keras.Model(*(2 * [keras.Input(shape, name="odd")]))
    with pytest.raises(ValueError, match=r"takes input shape .* expected \(batch, size, size"):
        input_spec(model)


def test_decode_follows_the_model_channels() -> None:
    """Colour files become gray for a 1-band model; a 3-band model keeps the colour bands."""
    gray = prepare_image(encoded("RGB"), InputSpec(24, 1))
    rgb = prepare_image(encoded("RGB"), InputSpec(24, 3))
    from_gray = prepare_image(encoded("L"), InputSpec(24, 3))
    assert gray.shape == (24, 24, 1) and rgb.shape == (24, 24, 3)
    assert rgb[..., 0].mean() == pytest.approx(200, abs=1)
    assert gray.mean() == pytest.approx(200 * 0.299, abs=2)  # ITU-R 601 luma of pure red
    np.testing.assert_allclose(from_gray[..., 0], from_gray[..., 2])


def test_batch_inference_decodes_as_the_model_was_built(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(encoded("RGB"))
    one_band, three_bands = (predict_files(band_means(c), [str(path)]) for c in (1, 3))
    assert one_band[0] == pytest.approx(200 * 0.299, abs=2)
    assert three_bands[0] == pytest.approx(200, abs=1)
