"""Real, decodable PNG and JPEG results for the emulator, drawn with Pillow.

Downstream code (operators that download and store results) must be exercised with genuine image
files, and a person opening the output folder should see which prompt made which file. So each image
shows the prompt's words (wrapped, shortened if long), the aspect ratio and the APIXO task id over a
gradient whose colours come from the task. Pillow, rather than the stdlib-only encoders used before,
because drawing text needs a font rasteriser and real JPEG compression; it is the ``emulator`` extra,
so the provider itself still needs no imaging library. Text uses Pillow's bundled default font, never a
system font file, so images look the same on every machine.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
from functools import lru_cache

try:
    from PIL import Image, ImageDraw, ImageFont
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The APIXO emulator draws its result images with Pillow, which is not installed: "
        "pip install 'airflow-provider-nanobanana[emulator]'"
    ) from error

__all__ = ["LONG_SIDE", "THUMBNAIL_SIDE", "image_size", "render_image"]

LONG_SIDE = 512
"""Long side of emulated images: big enough to look like a result, small enough to stay cheap."""

THUMBNAIL_SIDE = LONG_SIDE // 4
"""Long side of the source thumbnail an edit's result shows in its top-left corner."""

TEXT_COLOUR = (255, 255, 255)
"""Text is white on a darkened panel, so it reads over any task colour."""

PANEL_ALPHA = 128
"""Opacity of the panel behind the text: dark enough for white text, light enough to show the task colour."""

MAX_PROMPT_LINES = 8
"""A long prompt is shortened rather than shrunk into a wall of text: its start identifies it."""

ELLIPSIS = "\u2026"
"""Ends a shortened prompt; the bundled font has this glyph."""

Rgb = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def image_size(aspect_ratio: str | None, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """Width and height for an aspect ratio like ``16:9``; ``auto`` or anything unparsable is square."""
    try:
        w_part, h_part = (aspect_ratio or "").split(":")
        ratio_w, ratio_h = int(w_part), int(h_part)
    except ValueError:
        return long_side, long_side
    if ratio_w <= 0 or ratio_h <= 0:
        return long_side, long_side
    if ratio_w >= ratio_h:
        return long_side, max(1, round(long_side * ratio_h / ratio_w))
    return max(1, round(long_side * ratio_w / ratio_h)), long_side


@lru_cache(maxsize=32)
def render_image(
    output_format: str, *, prompt: str, aspect_ratio: str, task_id: str, source: bytes | None = None
) -> bytes:
    """PNG or JPEG bytes (``png``, ``jpeg``/``jpg``) showing the task, and in its top-left corner the
    ``source`` thumbnail (PNG) of an edit; cached because downloads repeat."""
    if output_format not in ("png", "jpeg", "jpg"):
        raise ValueError(f"unsupported output format: {output_format}")
    image = _compose(image_size(aspect_ratio), prompt=prompt, aspect_ratio=aspect_ratio, task_id=task_id)
    if source is not None:
        image.paste(Image.open(io.BytesIO(source)).convert("RGB"), (0, 0))
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _compose(size: tuple[int, int], *, prompt: str, aspect_ratio: str, task_id: str) -> Image.Image:
    """The picture: task-coloured gradient, a translucent panel, the prompt above, ratio and id below."""
    width, height = size
    image = _gradient(size, f"{task_id}:{prompt}").convert("RGBA")
    margin = max(2, round(min(size) * 0.05))
    panel = (margin, margin, width - 1 - margin, height - 1 - margin)
    if panel[2] <= panel[0] or panel[3] <= panel[1]:
        return image.convert("RGB")
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rounded_rectangle(panel, radius=margin, fill=(0, 0, 0, PANEL_ALPHA))
    image = Image.alpha_composite(image, overlay).convert("RGB")
    draw = ImageDraw.Draw(image)

    left, top, right, bottom = panel[0] + margin, panel[1] + margin, panel[2] - margin, panel[3] - margin
    inner_width = right - left
    if inner_width <= 0 or bottom <= top:
        return image
    long_side = max(size)

    # Footer: aspect ratio and size, then the task id on a line of its own (shrunk until it fits).
    footer = [printable(f"{aspect_ratio}  \u00b7  {width} x {height}")]
    if task_id:
        footer.append(printable(task_id))
    footer_font = _fit_font(footer[-1], inner_width, start=round(long_side / 28), smallest=8)
    footer_step = _line_height(footer_font) + max(1, _font_size(footer_font) // 4)
    footer_top = bottom - footer_step * len(footer)
    for index, line in enumerate(footer):
        draw.text((left, footer_top + index * footer_step), line, TEXT_COLOUR, footer_font)
    rule_y = footer_top - max(2, margin // 2)
    draw.line((left, rule_y, right, rule_y), fill=TEXT_COLOUR, width=1)

    # Prompt: the largest size at which it fits above the rule, else the smallest size, shortened.
    area_bottom = rule_y - max(2, margin // 2)
    lines, font, step = _layout_prompt(
        printable(" ".join(prompt.split())),
        inner_width,
        area_bottom - top,
        sizes=range(round(long_side / 14), max(10, round(long_side / 30)) - 1, -2),
    )
    y = top + max(0, (area_bottom - top - step * len(lines)) // 2)
    for line in lines:
        x = left + max(0, (inner_width - round(draw.textlength(line, font=font))) // 2)
        draw.text((x, y), line, TEXT_COLOUR, font)
        y += step
    return image


def _gradient(size: tuple[int, int], seed: str) -> Image.Image:
    """A diagonal blend of two colours derived from the seed, so each task gets its own background."""
    width, height = size
    start, end = _palette(seed)
    span = max(1, width + height - 2)
    ramp = bytes(round(255 * i / span) for i in range(width + height - 1))
    mask = Image.frombytes("L", size, b"".join(ramp[y : y + width] for y in range(height)))
    return Image.composite(Image.new("RGB", size, end), Image.new("RGB", size, start), mask)


def _palette(seed: str) -> tuple[Rgb, Rgb]:
    """Two colours derived from the seed, so each task gets its own recognisable image."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    """Pillow's bundled font at a size; without FreeType Pillow falls back to a fixed bitmap font."""
    return ImageFont.load_default(size=size)


def _font_size(font: Font) -> int:
    """Nominal size of a font (the bitmap fallback has none; its glyphs are about 11 px)."""
    return int(getattr(font, "size", 11))


def printable(text: str) -> str:
    """``text`` in characters the font can draw, so no glyph shows as an empty box.

    The bundled font covers ASCII and a little punctuation: accented letters lose their accents
    (``café`` -> ``cafe``), anything else becomes ``?``. The bitmap fallback only encodes Latin-1.
    """
    if not isinstance(_font(16), ImageFont.FreeTypeFont):
        return text.replace(ELLIPSIS, "...").encode("latin-1", "replace").decode("latin-1")
    return "".join(_printable_char(char) for char in text)


@lru_cache(maxsize=4096)
def _printable_char(char: str) -> str:
    """One character, its base letters, a plain dash or space, or ``?`` when the font cannot draw it."""
    if _has_glyph(char):
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and all(_has_glyph(c) for c in base):
        return base
    category = unicodedata.category(char)
    return "-" if category == "Pd" else " " if category == "Zs" else "?"


@lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    """Whether the font draws ``char`` as itself rather than its missing-glyph box (Pillow cannot ask)."""
    return char == " " or _glyph_pixels(char) != _glyph_pixels("\ue000")  # private use: never in the font


def _glyph_pixels(char: str) -> bytes:
    canvas = Image.new("L", (32, 32))
    ImageDraw.Draw(canvas).text((4, 4), char, 255, _font(16))
    return canvas.tobytes()


def _line_height(font: Font) -> int:
    """Height of a line including accents and descenders."""
    return int(font.getbbox("Agjy|")[3])


def _fit_font(text: str, width: int, *, start: int, smallest: int) -> Font:
    """The largest font, from ``start`` down to ``smallest``, at which ``text`` fits on one line."""
    for size in range(max(start, smallest), smallest - 1, -1):
        font = _font(size)
        if font.getlength(text) <= width:
            return font
    return _font(smallest)


def _layout_prompt(prompt: str, width: int, height: int, sizes: range) -> tuple[list[str], Font, int]:
    """Lines, font and line step for the prompt: the largest size at which it all fits.

    Otherwise the smallest size, shortened to at most ``MAX_PROMPT_LINES`` lines: as many of the
    first words as stay readable.
    """
    layout: tuple[list[str], Font, int] = ([], _font(10), 10)
    for size in sizes:
        font = _font(size)
        gap = max(1, size // 5)
        step = _line_height(font) + gap
        lines, shortened = wrap_lines(
            prompt, font, width, max_lines=min(MAX_PROMPT_LINES, (height + gap) // step)
        )
        layout = (lines, font, step)
        if not shortened:
            break
    return layout


def wrap_lines(text: str, font: Font, width: int, max_lines: int) -> tuple[list[str], bool]:
    """Word-wrap ``text`` to ``width`` pixels, and whether it was shortened to ``max_lines``.

    Words wider than a line are broken between characters, so long ids and URLs still show; a
    shortened text ends in an ellipsis.
    """
    if not text:
        return [], False
    if max_lines <= 0:
        return [], True
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > width and len(lines) <= max_lines:
            cut = _longest_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) <= max_lines:
        return lines, False
    kept = lines[:max_lines]
    kept[-1] = _with_ellipsis(kept[-1], font, width)
    return kept, True


def _longest_prefix(word: str, font: Font, width: int) -> int:
    """Length of the longest prefix of ``word`` that fits in ``width`` (at least one character)."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(word[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _with_ellipsis(line: str, font: Font, width: int) -> str:
    """``line`` plus an ellipsis, dropping trailing words (or characters) until it fits."""
    ellipsis = printable(ELLIPSIS)
    while line:
        candidate = line.rstrip() + ellipsis
        if font.getlength(candidate) <= width:
            return candidate
        head, space, _ = line.rstrip().rpartition(" ")
        line = head if space and head else line.rstrip()[:-1]
    return ellipsis
