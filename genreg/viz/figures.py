"""Drawing and saving, kept apart: every picture is drawn as a matplotlib figure, then saved or rendered.

matplotlib and torchvision are imported when a picture is drawn, not when
genreg is imported: together they cost seconds that `genreg list` should not pay.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from genreg.errors import UsageError
from genreg.files.atomic import atomic_write, check_writable
from genreg.limits import check_memory

DPI = 100  # pixels per inch of every saved or rendered picture
MAX_PIXELS = 2**16 - 1  # matplotlib's Agg draws no picture wider or taller than this


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_figure(
    images: torch.Tensor,
    ncol: int,
    row_labels: list[str] | None = None,
    column_labels: list[str] | None = None,
    title: str | None = None,
) -> Any:
    """Images (N, C, H, W) in [0, 1] as a grid of ``ncol`` columns, rows and columns optionally labelled.

    Column labels go above the grid, slanted, so that a value per column (``ink=0.123``) fits
    over images only 28 pixels wide; ``title`` goes below it.
    """
    plt = pyplot()
    rows = math.ceil(images.shape[0] / ncol)
    fig, ax = plt.subplots(figsize=_grid_inches(rows, ncol))
    show_grid(ax, images, ncol)
    height, width = images.shape[2:]
    ax.set_xticks([])
    if column_labels:
        ax.set_xticks([2 + (width + 2) * j + width / 2 for j in range(ncol)], column_labels[:ncol], fontsize=7)
        ax.tick_params(top=False, bottom=False, labeltop=True, labelbottom=False)
        plt.setp(ax.get_xticklabels(), rotation=45, ha="left", rotation_mode="anchor")
    ax.set_yticks([])
    if row_labels:
        ax.set_yticks([2 + (height + 2) * i + height / 2 for i in range(rows)], row_labels[:rows])
        ax.tick_params(left=False)
    if title:
        ax.set_xlabel(title, fontsize=7)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout(pad=0.2)
    return fig


def _grid_inches(rows: int, columns: int) -> tuple[float, float]:
    """The (width, height) in inches of :func:`grid_figure`'s picture of ``rows`` x ``columns`` images."""
    return columns * 0.6 + 0.6, rows * 0.6 + 0.3


def check_grid(rows: int, columns: int, image_shape: tuple[int, ...]) -> None:
    """Refuse, before any image is decoded, a :func:`grid_figure` of ``rows`` x ``columns`` images of
    ``image_shape`` (C, H, W) that cannot be drawn here; for vectors (``image_shape`` (F,)), a heatmap of
    ``rows * columns`` samples (see :func:`check_heatmap`).

    Raises :class:`UsageError` naming the limit: a picture more than :data:`MAX_PIXELS` wide or tall
    (matplotlib's own limit), or one whose images and pixels need more memory than this process can
    still allocate (see :func:`genreg.limits.available_memory`).
    """
    if len(image_shape) == 1:
        check_heatmap(rows * columns, image_shape[0])
        return
    width, height = _grid_inches(rows, columns)
    grid = f"a picture of {rows:,} x {columns:,} images"
    if max(width, height) * DPI > MAX_PIXELS:
        most = int((MAX_PIXELS / DPI - 0.6) / 0.6)
        raise UsageError(
            f"{grid} would be {width * DPI:,.0f} x {height * DPI:,.0f} pixels, but a picture can be at most "
            f"{MAX_PIXELS:,} pixels on a side: at most {most:,} images per row or column; ask for fewer."
        )
    channels, h, w = image_shape
    decoded = 8 * rows * columns * channels * h * w * 4  # float32 decoder outputs, their copies and activations
    drawn = 3 * 4 * rows * (h + 2) * columns * (w + 2) + 4 * round(width * DPI) * round(height * DPI)
    check_memory(decoded + drawn, grid, "ask for fewer images.", UsageError)


def check_heatmap(samples: int, features: int) -> None:
    """Refuse, before any vector is decoded, a heatmap of ``samples`` vectors of ``features`` values whose
    decoding and drawing need more memory than this process can still allocate (:class:`UsageError`).

    Its size in pixels is bounded whatever the number of samples (matplotlib resamples the heatmap), so
    memory is the only limit.
    """
    needed = 12 * 4 * samples * features  # float32 decoder outputs, their copies and activations, and colours
    check_memory(needed, f"a picture of {samples:,} vectors of {features:,} features", "ask for fewer.", UsageError)


def show_grid(ax: Any, images: torch.Tensor, ncol: int) -> None:
    """Draw images (N, C, H, W) in [0, 1] on ``ax`` as one picture of ``ncol`` columns, 2-pixel white gaps.

    1, 3 or 4 channels are grey, RGB or RGBA; other counts, which no picture format holds, are drawn as
    the mean of their channels in grey, and ``ax`` titled so.
    """
    from torchvision.utils import make_grid

    if images.shape[1] not in (1, 3, 4):
        ax.set_title(f"mean of {images.shape[1]} channels", fontsize=7)
        images = images.float().mean(1, keepdim=True)

    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=ncol, padding=2, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1)


def picture_formats() -> list[str]:
    """The file extensions a picture may be saved with here: matplotlib's formats (png, pdf, svg, ...) less those
    that need a program or a Pillow plugin this machine lacks (see :func:`unavailable_formats`)."""
    from matplotlib.backend_bases import FigureCanvasBase

    missing = unavailable_formats()
    return sorted(ext for ext in FigureCanvasBase.get_supported_filetypes() if ext not in missing)


def unavailable_formats() -> dict[str, str]:
    """matplotlib's formats that cannot be written here, each with what it needs and this machine lacks (e.g.
    ``{"pgf": "xelatex"}``): pgf (and any format, with
    ``text.usetex``) a TeX installation, ps/eps a distiller program when ``ps.usedistiller`` asks for one, and the
    bitmap formats Pillow writes (jpg, tif, webp, ...) a Pillow with that format's plugin."""
    import shutil

    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase
    from PIL import Image

    params = matplotlib.rcParams
    programs: dict[str, list[str]] = {"pgf": [params["pgf.texsystem"]]}
    distiller = {"ghostscript": ["gs"], "xpdf": ["ps2pdf", "pdftops"]}.get(params["ps.usedistiller"] or "", [])
    programs["ps"] = programs["eps"] = distiller
    pillow = Image.registered_extensions()
    missing = {}
    for ext in FigureCanvasBase.get_supported_filetypes():
        needed = programs.get(ext, []) + (["latex", "dvipng", "dvips"] if params["text.usetex"] else [])
        absent = [program for program in needed if shutil.which(program) is None]
        if absent:
            missing[ext] = " and ".join(absent)
        elif ext not in _NOT_BY_PILLOW and pillow.get(f".{ext}") not in Image.SAVE:
            missing[ext] = f"Pillow with a plugin for {ext}"
    return missing


_NOT_BY_PILLOW = ("png", "pdf", "svg", "svgz", "ps", "eps", "pgf", "raw", "rgba")  # matplotlib writes these itself


def check_picture_path(path: str | Path, option: str = "-o", arrays: bool = False) -> Path:
    """``path`` if its extension names a picture format (or, with ``arrays``, ``.npz``/``.npy``: see
    :func:`save_arrays`) and its folder can be written now; check it before the work that draws the picture.
    Raises :class:`UsageError` listing the formats, or :class:`~genreg.errors.OutputError` for a folder that
    cannot be written."""
    given, path = str(path), Path(path)
    if not path.name:  # "" or ".": no file named
        raise UsageError(f"{option} {given!r} names no file; give a picture file such as samples.png.")
    extension = path.suffix.lower().lstrip(".")
    if extension not in picture_formats() and not (arrays and is_arrays_path(path)):
        numbers = " (or .npz, .npy: the arrays themselves)" if arrays else ""
        lacking = unavailable_formats().get(extension)
        problem = (
            f"'{path.suffix}' needs {lacking}, which is not installed here, so it is none"
            if lacking
            else f"'{path.suffix or '(none)'}' is none"
        )
        raise UsageError(
            f"{option} {path}: a picture is written in the format its extension names, and {problem} of "
            f"{', '.join(picture_formats())}{numbers}; e.g. {path.with_suffix('.png')}."
        )
    return check_writable(path, option)


def is_arrays_path(path: str | Path) -> bool:
    """Whether ``path`` asks for arrays (``.npz`` or ``.npy``) rather than a picture."""
    return Path(path).suffix.lower() in (".npz", ".npy")


def save_arrays(arrays: dict[str, Any], path: str | Path) -> Path:
    """Write ``arrays`` (tensors, or numpy arrays such as class names, by name) atomically: all of them as a
    ``.npz``, or the first one as a ``.npy``; text is written as numpy's unicode, never pickled.

    Raises :class:`~genreg.errors.OutputError` for a folder that cannot be written.
    """
    import numpy as np

    values = {
        name: value if isinstance(value, np.ndarray) else value.detach().cpu().numpy() for name, value in arrays.items()
    }
    if Path(path).suffix.lower() == ".npy":
        atomic_write(path, lambda tmp: np.save(tmp, next(iter(values.values())), allow_pickle=False))
    else:  # the temporary file ends in .npz too, so numpy adds no second one
        atomic_write(path, lambda tmp: np.savez(tmp, **values))
    return Path(path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as the PNG ``path`` atomically and close it.

    Raises :class:`~genreg.errors.OutputError` for a folder that cannot be written;
    a file already at ``path`` is then left as it was.
    """
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight"))
    finally:
        pyplot().close(fig)
    return Path(path)


def figure_pixels(fig: Any) -> torch.Tensor:
    """``fig`` as the (H, W, 3) uint8 pixels :func:`save_figure` would write, then closed: for trackers that
    log images rather than files."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return torch.from_numpy(np.array(image.convert("RGB")))
