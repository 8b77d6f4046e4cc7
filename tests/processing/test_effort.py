"""The encoders' effort (WEBP_METHOD, AVIF_SPEED) reaches the encoder, and is checked."""

import io

import pytest
from PIL import Image, features

from pipelined import samples
from pipelined.errors import ConfigError
from pipelined.processing import ProcessingOptions
from pipelined.processing.encoding import Encoding, encode_as
from pipelined.processing.options import EncoderEffort, OutputFormatName

WHITE = (255, 255, 255)


def photo(width: int, height: int) -> Image.Image:
    return Image.open(io.BytesIO(samples.photo_jpeg(width, height))).convert("RGB")


def encoded_size(fmt: OutputFormatName, effort: EncoderEffort) -> int:
    return len(encode_as(photo(320, 240), Encoding(fmt, 82, WHITE, effort)).data)


def test_the_webp_method_is_the_one_asked_for() -> None:
    # Method 0 skips the rate-distortion search that 6 does: larger output, always.
    fastest = encoded_size("webp", EncoderEffort(webp_method=0))
    slowest = encoded_size("webp", EncoderEffort(webp_method=6))
    assert fastest > slowest


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no libavif")
def test_the_avif_speed_is_the_one_asked_for() -> None:
    slow = encoded_size("avif", EncoderEffort(avif_speed=4))
    fast = encoded_size("avif", EncoderEffort(avif_speed=10))
    assert slow != fast


def test_options_carry_the_effort_and_refuse_what_the_encoders_lack() -> None:
    assert ProcessingOptions().effort == EncoderEffort(webp_method=2, avif_speed=7)
    with pytest.raises(ConfigError, match="webp_method"):
        EncoderEffort(webp_method=7)
    with pytest.raises(ConfigError, match="avif_speed"):
        EncoderEffort(avif_speed=11)
