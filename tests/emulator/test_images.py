"""The emulator's result images: sizes per aspect ratio, the prompt and footer drawn as text."""

from __future__ import annotations

import pytest
from PIL import ImageFont

from airflow_provider_nanobanana.emulator.images import image_size, printable, render_image, wrap_lines
from airflow_provider_nanobanana.emulator.validation import ASPECT_RATIOS
from tests.support import PROMPT_AREA, decode, ink, ink_count

FOOTER_AREA = (0.1, 0.7, 0.9, 1.0)
"""Where the footer (ratio, task id) sits on square images, as fractions of the sides."""


@pytest.mark.parametrize(
    ("ratio", "size"), [("1:1", (512, 512)), ("4:5", (410, 512)), ("21:9", (512, 219)), ("x", (512, 512))]
)
def test_image_size(ratio: str, size: tuple[int, int]) -> None:
    assert image_size(ratio) == size


FORMATS = [("png", "PNG"), ("jpeg", "JPEG"), ("jpg", "JPEG")]
"""Output format names the emulator accepts, and what Pillow calls the decoded file."""


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
@pytest.mark.parametrize(("output_format", "image_format"), FORMATS)
def test_every_aspect_ratio_renders_at_its_size(ratio: str, output_format: str, image_format: str) -> None:
    data = render_image(output_format, prompt="a watercolor fox", aspect_ratio=ratio, task_id="task_1")
    assert decode(data, image_format).size == image_size(ratio)


@pytest.mark.parametrize(("output_format", "image_format"), FORMATS[:2])
def test_the_prompt_is_drawn_as_text(output_format: str, image_format: str) -> None:
    def prompt_ink(prompt: str) -> int:
        data = render_image(output_format, prompt=prompt, aspect_ratio="1:1", task_id="task_1")
        return ink_count(decode(data, image_format), PROMPT_AREA)

    without, short, longer = prompt_ink(""), prompt_ink("fox"), prompt_ink("a watercolor fox in the snow")
    assert without == 0, "the background alone is never near white behind the panel"
    assert 100 < short < longer


def test_the_footer_shows_the_ratio_and_the_task_id() -> None:
    def footer(task_id: str, ratio: str = "1:1") -> bytes:
        data = render_image("png", prompt="a watercolor fox", aspect_ratio=ratio, task_id=task_id)
        return ink(decode(data, "PNG"), FOOTER_AREA)

    first = footer("task_0123456789abcdef01234567")
    assert first.count(255) > footer("").count(255) > 100
    assert first != footer("task_fedcba9876543210fedcba98"), "another id, other glyphs"
    assert first != footer("task_0123456789abcdef01234567", "4:3"), "another ratio, other glyphs"
    assert first == footer("task_0123456789abcdef01234567")


def test_a_long_prompt_is_shortened_and_still_renders() -> None:
    data = render_image("png", prompt="a watercolor fox " * 300, aspect_ratio="21:9", task_id="task_1")
    image = decode(data, "PNG")
    assert image.size == (512, 219)
    assert ink_count(image, (0.1, 0.1, 0.9, 0.5)) > 200


def test_wrap_fits_the_width_and_ends_a_shortened_text_with_an_ellipsis() -> None:
    font = ImageFont.load_default(size=20)
    assert wrap_lines("a watercolor fox", font, 400, max_lines=3) == (["a watercolor fox"], False)
    lines, shortened = wrap_lines("a watercolor fox " * 50, font, 200, max_lines=3)
    assert shortened and len(lines) == 3 and lines[-1].endswith("\u2026")
    assert all(font.getlength(line) <= 200 for line in lines)
    url = "https://example.com/" + "x" * 80
    lines, shortened = wrap_lines(url, font, 200, max_lines=10)
    assert not shortened and len(lines) > 1 and "".join(lines) == url
    assert all(font.getlength(line) <= 200 for line in lines)


def test_characters_the_font_cannot_draw_are_replaced() -> None:
    assert printable("caf\u00e9 \u2014 \u6771 \u201cok\u201d") == "cafe - ? \u201cok\u201d"


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="webp"):
        render_image("webp", prompt="x", aspect_ratio="1:1", task_id="task_1")
