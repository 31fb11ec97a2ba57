"""Tests genreg/viz/figures.py: pictures that cannot be drawn are refused before any image is decoded."""

from __future__ import annotations

import pytest

from genreg import limits
from genreg.errors import UsageError
from genreg.viz.figures import DPI, MAX_PIXELS, check_grid, check_picture_path, grid_figure, pyplot


def test_a_grid_wider_than_a_picture_can_be_is_refused_naming_the_limit() -> None:
    with pytest.raises(UsageError) as caught:
        check_grid(8, 10**9, (1, 28, 28))
    assert str(caught.value).startswith("a picture of 8 x 1,000,000,000 images would be 60,000,000,060 x 510 pixels")
    assert "at most 65,535 pixels on a side: at most 1,091 images per row or column; ask for fewer." in str(
        caught.value
    )


@pytest.mark.slow
def test_the_largest_grid_allowed_is_one_matplotlib_draws() -> None:
    """The limit is matplotlib's own: the widest grid check_grid allows is drawn; one more column is refused."""
    most = int((MAX_PIXELS / DPI - 0.6) / 0.6)
    check_grid(1, most, (1, 1, 1))
    with pytest.raises(UsageError):
        check_grid(1, most + 1, (1, 1, 1))
    import torch

    figure = grid_figure(torch.zeros(most, 1, 1, 1), ncol=most)
    try:
        assert figure.get_size_inches()[0] * DPI <= MAX_PIXELS
        figure.canvas.draw()  # Agg refuses a side over 2**16 pixels with a ValueError
    finally:
        pyplot().close(figure)


def test_a_grid_that_needs_more_memory_than_there_is_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sample -n 300` of 3x256x256 images under a 6 GB limit: 90,000 images, refused naming the limit."""
    monkeypatch.setattr(limits, "available_memory", lambda: (6 * 10**9, "left under this process's limit"))
    with pytest.raises(
        UsageError, match=r"^a picture of 300 x 300 images needs about .* GB of memory, but only 6.0 GB"
    ):
        check_grid(300, 300, (3, 256, 256))
    check_grid(8, 8, (3, 256, 256))  # a usual grid of the same images fits


@pytest.mark.parametrize("given", ["", "."])
def test_a_picture_path_that_names_no_file_is_refused(given: str) -> None:
    """Found by the CLI fuzzer: `-o ''` ended in a ValueError traceback."""
    with pytest.raises(UsageError, match=r"^-o '.*' names no file; give a picture file such as samples.png\.$"):
        check_picture_path(given)


def test_images_of_any_channel_count_are_drawn() -> None:
    """Case 6 of issue 16: 16-channel images (channels-last data read as NCHW) crashed matplotlib with a TypeError."""
    import torch

    for channels in (2, 4, 16):
        figure = grid_figure(torch.rand(4, channels, 5, 5), ncol=2)
        assert figure.axes[0].get_title() == ("" if channels == 4 else f"mean of {channels} channels")
        pyplot().close(figure)


def test_arrays_files_are_accepted_where_asked_and_written_atomically(tmp_path) -> None:
    """Case 10 of issue 16: `-o samples.npz` was refused; users want the numbers."""
    import numpy as np
    import torch

    from genreg.viz.figures import save_arrays

    with pytest.raises(UsageError, match=r"'\.tmp' is none of .*png.* \(or \.npz, \.npy: the arrays themselves\)"):
        check_picture_path(tmp_path / "out.tmp", arrays=True)
    with pytest.raises(UsageError, match="'.npz' is none of"):
        check_picture_path(tmp_path / "out.npz")  # where only a picture can be written
    images, labels = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    with np.load(
        save_arrays({"images": images, "label": labels}, check_picture_path(tmp_path / "s.npz", arrays=True))
    ) as saved:
        assert np.array_equal(saved["images"], images.numpy()) and saved["label"].tolist() == [0, 1, 2]
    assert np.array_equal(np.load(save_arrays({"images": images}, tmp_path / "s.npy")), images.numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy", "s.npz"]


def test_every_listed_picture_format_can_be_saved_here(tmp_path) -> None:
    """`-o x.pgf` was accepted, then failed after the work: pgf needs a TeX installation (xelatex) this machine
    may lack. Every format listed is one a tiny figure can be written in."""
    import torch

    from genreg.viz.figures import picture_formats, save_figure

    for extension in picture_formats():
        path = save_figure(grid_figure(torch.rand(2, 1, 4, 4), ncol=2), tmp_path / f"grid.{extension}")
        assert path.stat().st_size > 0, extension


def test_a_format_that_needs_a_missing_program_is_refused_naming_it(tmp_path, monkeypatch) -> None:
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "pgf.texsystem", "lualatex")
    monkeypatch.setattr("shutil.which", lambda program: None)
    with pytest.raises(UsageError, match=r"'\.pgf' needs lualatex, which is not installed here, so it is none of"):
        check_picture_path(tmp_path / "grid.pgf")
    assert not list(tmp_path.iterdir())
