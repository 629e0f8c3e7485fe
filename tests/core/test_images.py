"""Tests for workbench.core.images: every bad input becomes one clear ImageLoadError, every odd but valid one is converted
to RGB uint8 (H, W, 3) correctly.

Real images are read from the shared datasets folder (env var SMEAR_DATASETS, default <repo>/../shared/datasets);
generated files are written into pytest's tmp_path only.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

import workbench.core.images as images
from workbench.core.errors import ImageLoadError, WorkbenchError
from workbench.core.images import DEFAULT_MAX_PIXELS, ImageInput, collect_inputs, image_size, load_image, to_rgb8

DATASETS = Path(os.environ.get("SMEAR_DATASETS", Path(__file__).resolve().parents[2].parent / "shared" / "datasets"))
BCCD_JPEG = DATASETS / "bccd" / "BCCD" / "JPEGImages" / "BloodImage_00000.jpg"
ALL_IDB2_DIR = DATASETS / "all-idb" / "ALL_IDB2" / "img"


def _all_idb2_tiff() -> Path:
    """Im001_1.tif if the copy has it; ALL-IDB2 as shipped starts at Im013_1.tif, so else the first blast crop."""
    preferred = ALL_IDB2_DIR / "Im001_1.tif"
    if preferred.is_file():
        return preferred
    crops = sorted(ALL_IDB2_DIR.glob("Im*_1.tif")) if ALL_IDB2_DIR.is_dir() else []
    return crops[0] if crops else preferred


ALL_IDB2_TIFF = _all_idb2_tiff()

needs_bccd = pytest.mark.skipif(not BCCD_JPEG.is_file(), reason=f"BCCD image not found at {BCCD_JPEG} (SMEAR_DATASETS)")
needs_all_idb2 = pytest.mark.skipif(
    not ALL_IDB2_TIFF.is_file(), reason=f"ALL-IDB2 crops not found in {ALL_IDB2_DIR} (SMEAR_DATASETS)"
)


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _rng_image(shape, dtype=np.uint8, seed=0, high=256):
    return np.random.default_rng(seed).integers(0, high, shape, dtype=np.int64).astype(dtype)


def _assert_load_error(path, *fragments, **kwargs) -> ImageLoadError:
    """load_image(path) raises ImageLoadError naming the path and every fragment (case-insensitive), on one line."""
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    assert "\n" not in message
    assert isinstance(info.value, WorkbenchError)
    return info.value


def _assert_rgb8(array, shape=None):
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.ndim == 3 and array.shape[2] == 3
    assert array.flags["C_CONTIGUOUS"]
    if shape is not None:
        assert array.shape == shape


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_huge_bilevel_png(path: Path, width: int, height: int) -> None:
    """A valid, all-black 1-bit PNG of width x height, a few dozen KB on disk (rows of zeros compress well)."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale, deflate, no filter, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def _patch_tiff_size(path: Path, width: int, height: int) -> None:
    """Rewrite ImageWidth/ImageLength of the first page in place (the pixel data is left as it was)."""
    with tifffile.TiffFile(path) as tif:
        tags, byteorder = tif.pages[0].tags, tif.byteorder
        fields = [(tags["ImageWidth"], width), (tags["ImageLength"], height)]
        patches = [(tag.valueoffset, {3: "H", 4: "I"}[int(tag.dtype)], value) for tag, value in fields]
    data = bytearray(path.read_bytes())
    for offset, code, value in patches:
        struct.pack_into(byteorder + code, data, offset, value)
    path.write_bytes(bytes(data))


@pytest.fixture
def no_decoding(monkeypatch):
    """Records any attempt to decode pixels (PIL load or tifffile asarray): the list must stay empty."""
    calls: list[str] = []
    original_pil_load, original_tiff_asarray = ImageFile.ImageFile.load, tifffile.TiffPage.asarray

    def pil_load(self, *args, **kwargs):
        calls.append("PIL")
        return original_pil_load(self, *args, **kwargs)

    def tiff_asarray(self, *args, **kwargs):
        calls.append("tifffile")
        return original_tiff_asarray(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", pil_load)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", tiff_asarray)
    return calls


# --------------------------------------------------------------------------------------------------------------------
# load_image: files that cannot be used


def test_missing_file(tmp_path):
    _assert_load_error(tmp_path / "no_such_image.jpg", "not found")


def test_missing_file_given_as_str(tmp_path):
    path = tmp_path / "no_such_image.png"
    _assert_load_error(str(path), "not found")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _assert_load_error(path, "empty", "0 bytes")


@needs_bccd
def test_truncated_jpeg(tmp_path):
    data = BCCD_JPEG.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: int(len(data) * 0.4)])
    _assert_load_error(path, "truncated")


@needs_bccd
def test_jpeg_missing_only_its_end_marker_region_is_still_an_error(tmp_path):
    data = BCCD_JPEG.read_bytes()
    path = tmp_path / "almost_complete.jpg"
    path.write_bytes(data[: int(len(data) * 0.99)])
    _assert_load_error(path, "truncated")


@pytest.mark.parametrize("name", ["notes.jpg", "notes.png", "notes.tif", "notes.tiff", "notes.bmp"])
def test_text_file_with_image_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not an image, just some notes about a smear\n")
    _assert_load_error(path, "not an image file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_load_error(path)


@pytest.mark.parametrize("name", ["a_folder", "looks_like_an_image.jpg"])
def test_folder_passed_as_image(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    _assert_load_error(folder, "folder")


def test_file_name_too_long(tmp_path):
    path = tmp_path / ("x" * 400 + ".jpg")  # stat() fails with ENAMETOOLONG, not ENOENT
    _assert_load_error(path)


def test_broken_symlink(tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "gone.png")
    _assert_load_error(link, "not found")


@needs_all_idb2
@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL: "Corrupt EXIF data"
def test_truncated_real_tiff(tmp_path):
    """ALL-IDB2 TIFFs keep their directory at the end: cutting the file loses it. Say the TIFF is damaged, not that it
    is of an unknown format."""
    data = ALL_IDB2_TIFF.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: int(len(data) * 0.4)])
    _assert_load_error(path, "tiff", "truncated or corrupt")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_generated_tiff(tmp_path, compression):
    """Directory at the start, pixel data cut off."""
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, _rng_image((200, 200, 3)), photometric="rgb", compression=compression)
    data = full.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: int(len(data) * 0.4)])
    _assert_load_error(path)


def test_png_with_bad_crc(tmp_path):
    path = tmp_path / "bad_crc.png"
    Image.fromarray(_rng_image((32, 32, 3))).save(path)
    data = bytearray(path.read_bytes())
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    path.write_bytes(bytes(data))
    _assert_load_error(path)


def test_tiff_with_zero_height(tmp_path):
    path = tmp_path / "zero_height.tif"
    tifffile.imwrite(path, _rng_image((8, 64, 3), np.uint16), photometric="rgb")
    _patch_tiff_size(path, 64, 0)
    _assert_load_error(path)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_image_too_small(tmp_path, suffix):
    path = tmp_path / f"tiny{suffix}"
    Image.fromarray(_rng_image((4, 5, 3))).save(path)
    _assert_load_error(path, "too small", "5x4")


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the damaged TIFF tags it skips
def test_corrupted_headers_never_escape_as_other_exceptions(tmp_path):
    """Flip bytes near the start of valid files of each kind: every outcome is an image or an ImageLoadError."""
    base = _rng_image((24, 24, 3), seed=3)
    sources = {}
    for suffix, writer in {
        ".jpg": lambda p: Image.fromarray(base).save(p, quality=90),
        ".png": lambda p: Image.fromarray(base).save(p),
        ".bmp": lambda p: Image.fromarray(base).save(p),
        ".tif": lambda p: tifffile.imwrite(p, base.astype(np.uint16) * 257, photometric="rgb"),
        ".tiff": lambda p: Image.fromarray(base).quantize(16).save(p),
    }.items():
        path = tmp_path / f"source{suffix}"
        writer(path)
        sources[suffix] = path.read_bytes()
    rng = random.Random(1234)
    for i in range(300):
        suffix = rng.choice(sorted(sources))
        data = bytearray(sources[suffix])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(min(len(data), 300))] = rng.randrange(256)
        path = tmp_path / f"fuzz_{i}{suffix}"
        path.write_bytes(bytes(data))
        try:
            result = load_image(path)
        except ImageLoadError as exc:
            assert str(path) in str(exc)
        else:
            _assert_rgb8(result)
        path.unlink()


# --------------------------------------------------------------------------------------------------------------------
# load_image: valid images in odd formats


def test_grayscale_png(tmp_path):
    gray = _rng_image((20, 30))
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    rgb = load_image(path)
    _assert_rgb8(rgb, (20, 30, 3))
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], gray)


def test_rgb_png_round_trips_exactly(tmp_path):
    original = _rng_image((16, 24, 3), seed=7)
    path = tmp_path / "rgb.png"
    Image.fromarray(original).save(path)
    np.testing.assert_array_equal(load_image(path), original)


def test_rgba_png_composited_on_white(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[...] = (10, 20, 30, 255)  # opaque everywhere ...
    rgba[0, 0] = (10, 20, 30, 0)  # ... except a fully transparent pixel
    rgba[1, 1] = (0, 0, 0, 128)  # and a half transparent black one
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    rgb = load_image(path)
    _assert_rgb8(rgb, (10, 12, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[5, 5]) == (10, 20, 30)
    assert np.all(np.abs(rgb[1, 1].astype(int) - 127) <= 1)  # 255 * (1 - 128/255) = 127


def test_gray_alpha_png(tmp_path):
    la = np.zeros((9, 9, 2), np.uint8)
    la[...] = (40, 255)
    la[2, 3] = (40, 0)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    rgb = load_image(path)
    _assert_rgb8(rgb, (9, 9, 3))
    assert tuple(rgb[0, 0]) == (40, 40, 40)
    assert tuple(rgb[2, 3]) == (255, 255, 255)


def test_palette_png_with_transparent_index(tmp_path):
    indices = np.zeros((10, 10), np.uint8)
    indices[0, 0] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([200, 10, 20, 0, 0, 0] + [0] * (254 * 3))
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)
    rgb = load_image(path)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[5, 5]) == (200, 10, 20)


def test_bilevel_png(tmp_path):
    bits = np.zeros((10, 16), bool)
    bits[:, 8:] = True
    path = tmp_path / "bits.png"
    Image.fromarray(bits).save(path)
    rgb = load_image(path)
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[0, 15]) == (255, 255, 255)


def test_bmp(tmp_path):
    original = _rng_image((12, 14, 3), seed=5)
    path = tmp_path / "image.bmp"
    Image.fromarray(original).save(path)
    np.testing.assert_array_equal(load_image(path), original)


def test_16bit_rgb_tiff(tmp_path):
    data = np.zeros((10, 10, 3), np.uint16)
    data[0, 0] = (65535, 257 * 100, 0)
    data[1, 1] = (257, 257 * 254, 257 * 255)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    rgb = load_image(path)
    _assert_rgb8(rgb, (10, 10, 3))
    assert tuple(rgb[0, 0]) == (255, 100, 0)
    assert tuple(rgb[1, 1]) == (1, 254, 255)
    assert tuple(rgb[2, 2]) == (0, 0, 0)


def test_16bit_rgb_tiff_uppercase_extension(tmp_path):
    data = np.full((8, 8, 3), 257 * 100, np.uint16)
    path = tmp_path / "RGB16.TIFF"
    tifffile.imwrite(path, data, photometric="rgb")
    assert np.all(load_image(path) == 100)


def test_16bit_grayscale_tiff(tmp_path):
    data = np.zeros((10, 10), np.uint16)
    data[0, 0], data[0, 1], data[0, 2] = 65535, 257 * 100, 0
    path = tmp_path / "gray16.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    rgb = load_image(path)
    _assert_rgb8(rgb, (10, 10, 3))
    assert [tuple(rgb[0, i]) for i in range(3)] == [(255,) * 3, (100,) * 3, (0,) * 3]


def test_16bit_grayscale_png(tmp_path):
    data = np.zeros((10, 10), np.uint16)
    data[0, 0], data[0, 1], data[0, 2] = 65535, 257 * 100, 0
    path = tmp_path / "gray16.png"
    Image.fromarray(data).save(path)  # mode I;16
    rgb = load_image(path)
    _assert_rgb8(rgb, (10, 10, 3))
    assert [tuple(rgb[0, i]) for i in range(3)] == [(255,) * 3, (100,) * 3, (0,) * 3]


def test_16bit_grayscale_png_is_mapped_by_value_not_stretched(tmp_path):
    data = np.full((10, 10), 257 * 50, np.uint16)  # a dark image stays dark
    path = tmp_path / "dark16.png"
    Image.fromarray(data).save(path)
    assert np.all(load_image(path) == 50)


def test_16bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2")
    data = np.zeros((10, 10, 3), np.uint16)
    data[0, 0] = (65535, 257 * 100, 0)  # RGB
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), data[..., ::-1])  # cv2 writes BGR
    rgb = load_image(path)
    _assert_rgb8(rgb, (10, 10, 3))
    assert tuple(rgb[0, 0]) == (255, 100, 0)


def test_planar_rgb_tiff(tmp_path):
    original = _rng_image((12, 10, 3), seed=11)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(original, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(load_image(path), original)


def test_rgba_tiff_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (10, 20, 30, 255)
    rgba[0, 0, 3] = 0
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    rgb = load_image(path)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[4, 4]) == (10, 20, 30)


@pytest.mark.parametrize("kind", ["palette", "cmyk"])
def test_palette_and_cmyk_tiff_are_converted_to_colours(tmp_path, kind):
    """tifffile returns palette indices / CMYK samples; the colours must come out as PIL renders them."""
    base = Image.fromarray(_rng_image((16, 16, 3), seed=2))
    image = base.quantize(8) if kind == "palette" else base.convert("CMYK")
    path = tmp_path / f"{kind}.tif"
    image.save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(load_image(path), expected)


def test_miniswhite_tiff_is_inverted(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "miniswhite.tif"
    tifffile.imwrite(path, gray, photometric="miniswhite")
    rgb = load_image(path)
    np.testing.assert_array_equal(rgb[:, :, 0], 255 - gray)
    np.testing.assert_array_equal(rgb[:, :, 0], np.asarray(Image.open(path).convert("L")))


@pytest.mark.parametrize("photometric", ["minisblack", "miniswhite"])
def test_bilevel_tiff(tmp_path, photometric):
    bits = np.zeros((16, 16), bool)
    bits[:8] = True  # a set bit is white for minisblack, black for miniswhite
    path = tmp_path / f"{photometric}.tif"
    tifffile.imwrite(path, bits, photometric=photometric)
    rgb = load_image(path)
    top, bottom = (255, 0) if photometric == "minisblack" else (0, 255)
    assert tuple(rgb[0, 0]) == (top,) * 3 and tuple(rgb[15, 0]) == (bottom,) * 3


def test_jpeg_named_tif_falls_back_to_pil(tmp_path):
    original = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    path = tmp_path / "really_a_jpeg.tif"
    Image.fromarray(original).save(path, format="JPEG", quality=95)
    rgb = load_image(path)
    _assert_rgb8(rgb, (16, 16, 3))
    assert np.abs(rgb.astype(int) - original).max() <= 3


@needs_all_idb2
def test_real_all_idb2_tiff():
    rgb = load_image(ALL_IDB2_TIFF)
    _assert_rgb8(rgb, (257, 257, 3))
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(ALL_IDB2_TIFF).convert("RGB")))
    assert rgb.std() > 5  # a real picture, not a constant array


@needs_bccd
def test_real_bccd_jpeg_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rgb = load_image(BCCD_JPEG)
    _assert_rgb8(rgb, (480, 640, 3))
    reference = cv2.imread(str(BCCD_JPEG), cv2.IMREAD_COLOR)[..., ::-1]
    assert reference.shape == rgb.shape
    assert np.abs(rgb.astype(np.int16) - reference.astype(np.int16)).max() <= 2


@needs_bccd
def test_image_size_reads_the_header():
    assert image_size(BCCD_JPEG) == (640, 480)


# --------------------------------------------------------------------------------------------------------------------
# load_image: pixel limit, checked before decoding


@needs_bccd
def test_pixel_limit_on_real_jpeg(no_decoding):
    error = _assert_load_error(BCCD_JPEG, "exceeds", "640x480", max_pixels=1000)
    assert "max_pixels" in str(error)
    assert no_decoding == []


@needs_all_idb2
def test_pixel_limit_on_real_tiff(no_decoding):
    _assert_load_error(ALL_IDB2_TIFF, "exceeds", "257x257", max_pixels=1000)
    assert no_decoding == []


@needs_bccd
def test_pixel_limit_is_inclusive_and_can_be_disabled():
    assert load_image(BCCD_JPEG, max_pixels=640 * 480).shape == (480, 640, 3)
    _assert_load_error(BCCD_JPEG, "exceeds", max_pixels=640 * 480 - 1)
    assert load_image(BCCD_JPEG, max_pixels=None).shape == (480, 640, 3)


def test_huge_png_is_refused_from_its_header(tmp_path, no_decoding):
    """400 MP in a 50 KB file: refused at the default limit without decoding (it would need 400 MB to decode)."""
    path = tmp_path / "huge.png"
    _write_huge_bilevel_png(path, 20000, 20000)
    assert path.stat().st_size < 1_000_000
    assert 20000 * 20000 > DEFAULT_MAX_PIXELS
    _assert_load_error(path, "exceeds", "20000x20000")
    assert no_decoding == []


def test_huge_tiff_is_refused_from_its_header(tmp_path, no_decoding):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    _patch_tiff_size(path, 30000, 20000)  # the header claims 600 MP; the pixel data is never looked at
    _assert_load_error(path, "exceeds", "30000x20000")
    assert no_decoding == []


# --------------------------------------------------------------------------------------------------------------------
# collect_inputs


def _touch_image(path: Path) -> Path:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format="PNG")
    return path


def test_collect_folder_returns_sorted_images_only(tmp_path):
    folder = tmp_path / "smears"
    folder.mkdir()
    for name in ["c.png", "a.jpg", "B.TIF", "d.jpeg", "e.bmp", "f.tiff"]:
        _touch_image(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "README").write_text("no extension")
    (folder / "sub").mkdir()
    _touch_image(folder / "sub" / "nested.png")  # not recursive
    (folder / "dir_named.png").mkdir()  # a folder that looks like an image: listed with why, never dropped

    inputs = collect_inputs([folder])
    odd = [item for item in inputs if item.error]
    assert [item.path.name for item in odd] == ["dir_named.png"] and "is a folder" in odd[0].error
    inputs = [item for item in inputs if not item.error]
    assert all(isinstance(item, ImageInput) for item in inputs)
    paths = [item.path for item in inputs]
    expected = sorted(folder / name for name in ["c.png", "a.jpg", "B.TIF", "d.jpeg", "e.bmp", "f.tiff"])
    assert paths == expected


def test_collect_accepts_str_and_keeps_argument_order(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _touch_image(second / "b.png")
    _touch_image(first / "a.png")
    single = _touch_image(tmp_path / "z.png")
    inputs = collect_inputs([str(second), single, first])
    assert [item.path for item in inputs] == [second / "b.png", single, first / "a.png"]


def test_collect_custom_extensions_are_case_insensitive(tmp_path):
    _touch_image(tmp_path / "a.PNG")
    _touch_image(tmp_path / "b.jpg")
    assert [item.path for item in collect_inputs([tmp_path], extensions=(".png",))] == [tmp_path / "a.PNG"]
    assert [item.path for item in collect_inputs([tmp_path], extensions=[".PnG"])] == [tmp_path / "a.PNG"]


def test_collect_empty_folder_is_reported(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    inputs = collect_inputs([folder])
    assert len(inputs) == 1
    assert inputs[0].path == folder
    assert inputs[0].error and "no images" in inputs[0].error


def test_collect_folder_without_images_is_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("text")
    (tmp_path / "sub").mkdir()
    inputs = collect_inputs([tmp_path])
    assert len(inputs) == 1 and inputs[0].path == tmp_path
    assert "no images" in inputs[0].error


def test_collect_unreadable_folder_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    _touch_image(folder / "a.png")

    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images.os, "scandir", refuse)
    inputs = collect_inputs([folder])
    assert len(inputs) == 1
    assert inputs[0].path == folder
    assert "cannot read folder" in inputs[0].error
    assert "Permission denied" in inputs[0].error


def test_collect_unreadable_folder_does_not_stop_the_others(tmp_path, monkeypatch):
    locked, fine = tmp_path / "locked", tmp_path / "fine"
    locked.mkdir()
    fine.mkdir()
    _touch_image(fine / "a.png")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(images.os, "scandir", scandir)
    inputs = collect_inputs([locked, fine])
    assert [item.path for item in inputs] == [locked, fine / "a.png"]
    assert "cannot read folder" in inputs[0].error and inputs[1].error is None


def test_collect_passes_missing_and_odd_paths_through(tmp_path):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.txt"
    text.write_text("x")
    too_long = tmp_path / ("y" * 400 + ".png")
    inputs = collect_inputs([missing, text, too_long])
    assert inputs == [ImageInput(missing), ImageInput(text), ImageInput(too_long)]
    _assert_load_error(inputs[0].path, "not found")  # load_image reports them later
    _assert_load_error(inputs[1].path, "not an image file")
    _assert_load_error(inputs[2].path)


def test_collect_nothing():
    assert collect_inputs([]) == []


def test_image_input_is_immutable(tmp_path):
    item = ImageInput(tmp_path)
    with pytest.raises(AttributeError):
        item.error = "changed"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------------------
# to_rgb8


def test_to_rgb8_float_unit_range():
    values = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    rgb = to_rgb8(values)
    _assert_rgb8(rgb, (1, 4, 3))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 64, 128, 255])  # rounded: 63.75 -> 64, 127.5 -> 128
    assert np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_rgb8_float_round_trip_of_8bit_values(dtype):
    levels = np.arange(256)
    rgb = to_rgb8((levels / 255.0).astype(dtype)[None, :])
    np.testing.assert_array_equal(rgb[0, :, 0], levels)


def test_to_rgb8_float_rgb_and_out_of_range():
    values = np.zeros((2, 2, 3), np.float64)
    values[0, 0] = (1.0, 0.0, 0.5)
    values[0, 1] = (-0.2, 0.999, 1.0)
    values[1, 1] = (np.nan, 0.0, 0.0)
    rgb = to_rgb8(values)
    assert tuple(rgb[0, 0]) == (255, 0, 128)
    assert tuple(rgb[0, 1]) == (0, 255, 255)
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_to_rgb8_float_on_0_255_scale_is_taken_by_value():
    values = np.array([[0.0, 100.0, 254.6, 300.0]])
    np.testing.assert_array_equal(to_rgb8(values)[0, :, 0], [0, 100, 255, 255])


def test_to_rgb8_bool():
    mask = np.array([[True, False], [False, True]])
    rgb = to_rgb8(mask)
    _assert_rgb8(rgb, (2, 2, 3))
    np.testing.assert_array_equal(rgb[..., 0], [[255, 0], [0, 255]])
    np.testing.assert_array_equal(to_rgb8(mask[:, :, None]), rgb)


def test_to_rgb8_planar_rgb():
    interleaved = _rng_image((5, 7, 3), seed=4)
    planar = np.ascontiguousarray(np.moveaxis(interleaved, -1, 0))
    assert planar.shape == (3, 5, 7)
    rgb = to_rgb8(planar)
    _assert_rgb8(rgb, (5, 7, 3))
    np.testing.assert_array_equal(rgb, interleaved)


def test_to_rgb8_planar_rgba_and_gray():
    rgba = np.zeros((4, 6, 5), np.uint8)  # (C, H, W)
    rgba[:3] = 50
    rgba[3] = 255
    rgba[3, 0, 0] = 0
    rgb = to_rgb8(rgba)
    _assert_rgb8(rgb, (6, 5, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (50, 50, 50)
    gray = _rng_image((1, 6, 5), seed=8)
    np.testing.assert_array_equal(to_rgb8(gray), np.repeat(gray[0][:, :, None], 3, axis=2))


def test_to_rgb8_planar_float():
    planar = np.zeros((3, 4, 6), np.float32)
    planar[0] = 1.0
    rgb = to_rgb8(planar)
    _assert_rgb8(rgb, (4, 6, 3))
    assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_to_rgb8_gray_alpha_short_image_is_not_taken_as_planar():
    la = np.zeros((3, 9, 2), np.uint8)  # (H, W, 2): height 3 must not be mistaken for 3 planes
    la[..., 0], la[..., 1] = 60, 255
    la[0, 0, 1] = 0
    rgb = to_rgb8(la)
    _assert_rgb8(rgb, (3, 9, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[2, 8]) == (60, 60, 60)


def test_to_rgb8_uint16_maps_by_value_rounded():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    rgb = to_rgb8(values)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values / 257.0).astype(np.uint8))
    assert to_rgb8(np.array([[0, 257 * 100, 65535]], np.uint16))[0, :, 0].tolist() == [0, 100, 255]


def test_to_rgb8_signed_and_32bit_integers_are_in_range():
    rgb = to_rgb8(np.array([[-5, 0, 1000, 4000]], np.int32))
    assert rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, 3, 0] == 255 and rgb[0, 1, 0] <= rgb[0, 2, 0] <= rgb[0, 3, 0]


def test_to_rgb8_uint8_rgb_is_unchanged_and_input_untouched():
    original = _rng_image((6, 6, 3), seed=9)
    copy = original.copy()
    rgb = to_rgb8(original)
    np.testing.assert_array_equal(rgb, copy)
    np.testing.assert_array_equal(original, copy)
    rgba = np.dstack([original, np.zeros((6, 6), np.uint8)])
    to_rgb8(rgba)
    np.testing.assert_array_equal(rgba[..., :3], copy)


def test_to_rgb8_non_contiguous_input():
    original = _rng_image((10, 10, 3), seed=10)
    view = original[::2, ::-1]
    _assert_rgb8(to_rgb8(view), (5, 10, 3))


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5), (6, 6, 5), (0,)])
def test_to_rgb8_rejects_unsupported_shapes(shape):
    with pytest.raises(ValueError):
        to_rgb8(np.zeros(shape, np.uint8))
