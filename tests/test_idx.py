"""IDX parsing and every validation error, on small files written here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mnist_cnn.data.idx import IDXError, read_images, read_labels, read_split, write_idx
from mnist_cnn.errors import UserError


@pytest.fixture
def pair(tmp_path):
    images = np.arange(5 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(5, 28, 28)
    labels = np.array([0, 3, 9, 1, 7], dtype=np.uint8)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lbl", labels)
    return tmp_path / "img", tmp_path / "lbl", images, labels


def test_round_trip(pair):
    img, lbl, images, labels = pair
    got_images, got_labels = read_split(img, lbl)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable  # torch.from_numpy needs no copy


def test_empty_split_is_valid(tmp_path):
    write_idx(tmp_path / "img", np.zeros((0, 28, 28), np.uint8))
    assert read_images(tmp_path / "img").shape == (0, 28, 28)


@pytest.mark.reliability("D1")
def test_truncated_body_names_file_and_byte_counts(pair):
    img = pair[0]
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(IDXError, match=r"img: truncated.*3936 bytes, found 3836"):
        read_images(img)


@pytest.mark.reliability("D2")
@pytest.mark.parametrize("size", [0, 5])
def test_header_incomplete(tmp_path, size):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00"[:size])
    with pytest.raises(IDXError, match=rf"short: header incomplete: {size} bytes.*needs 16"):
        read_images(path)


@pytest.mark.reliability("D3")
def test_gzip_file_says_gunzip(pair):
    img = pair[0]
    img.write_bytes(gzip.compress(img.read_bytes()))
    with pytest.raises(IDXError, match="gzip-compressed; gunzip it"):
        read_images(img)


@pytest.mark.reliability("D3")
def test_swapped_images_and_labels(pair):
    img, lbl, *_ = pair
    with pytest.raises(IDXError, match=r"lbl: wrong magic number 2049, expected 2051.*swapped"):
        read_images(lbl)
    with pytest.raises(IDXError, match=r"img: wrong magic number 2051, expected 2049.*swapped"):
        read_labels(img)


@pytest.mark.reliability("D3")
def test_random_magic(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(
        IDXError, match=r"wrong magic number 305419896, expected 2051 for IDX images$"
    ):
        read_images(tmp_path / "junk")


@pytest.mark.reliability("D4")
def test_count_mismatch_names_both_files(pair, tmp_path):
    img, _, _, labels = pair
    write_idx(tmp_path / "lbl4", labels[:4])
    with pytest.raises(IDXError, match=r"img holds 5 images but .*lbl4 holds 4 labels"):
        read_split(img, tmp_path / "lbl4")


@pytest.mark.reliability("D5")
def test_label_out_of_range_names_index_and_value(pair):
    lbl = pair[1]
    write_idx(lbl, np.array([0, 1, 12, 3, 200], dtype=np.uint8))
    with pytest.raises(
        IDXError, match=r"lbl: label 12 at index 2 is outside 0..9 \(2 such labels\)"
    ):
        read_labels(lbl)


@pytest.mark.reliability("D6")
def test_wrong_geometry(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(IDXError, match=r"images are 32x32, expected 28x28"):
        read_images(tmp_path / "img")


@pytest.mark.reliability("D6")
def test_trailing_bytes(pair):
    img = pair[0]
    img.write_bytes(img.read_bytes() + b"\x00" * 7)
    with pytest.raises(IDXError, match=r"has trailing bytes.*3936 bytes, found 3943"):
        read_images(img)


@pytest.mark.reliability("D10")
def test_missing_directory_and_dangling_link(tmp_path):
    with pytest.raises(IDXError, match="nope: file not found"):
        read_images(tmp_path / "nope")
    with pytest.raises(IDXError, match="not a regular file"):
        read_images(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(IDXError, match="link: dangling symbolic link"):
        read_images(tmp_path / "link")


@pytest.mark.reliability("SIZE2")
@pytest.mark.parametrize("claim", ["matching", "larger than the file"])
def test_a_huge_idx_file_is_refused_before_its_body_is_read(tmp_path, claim):
    import resource

    from mnist_cnn.data.idx import read_images

    count = 4_000_000  # 4M images of 28x28: 3.1 GB claimed
    path = tmp_path / "train-images-idx3-ubyte"
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (count, 28, 28))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(16 + count * 784 if claim == "matching" else 10**6)  # sparse: no disk used
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError) as info:
        read_images(path)
    assert str(path) in str(info.value)
    assert ("more than an MNIST-style file holds" if claim == "matching" else "truncated") in str(
        info.value
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 100 * 1024  # the body (3 GB) was never read
