"""Image files as samples of shape (H, W, C), decoded in worker processes.

Each image is one sample. Pixels are what Pillow decodes by default, converted to ``mode`` as
``Image.convert`` does, then resized and center-cropped as torchvision's ``Resize`` and
``CenterCrop`` do on PIL images. A baseline or progressive JPEG read as RGB or L is decoded by
simplejpeg (libjpeg-turbo, the optional ``images`` extra) when it is installed: the same
library and the same settings as Pillow's decoder (accurate integer IDCT, fancy upsampling), so
the same pixels (``tests/test_images.py`` holds the two equal), without Pillow's extra copy.

Decoding is the cost (milliseconds an image, its reduction microseconds), so it runs in
``workers`` processes, a bounded number of batches in flight: memory is bounded by that queue,
not by the dataset. A fit hands the source its per-chunk step (``reduced_chunks``): each process
decodes an image and reduces it at once, and only the batch's merged moments come back, a few
hundred bytes instead of the pixels. Images of other sizes are pooled there, pixel by pixel, on
the axes the fit reduces (the step for their own shape); statistics kept per position need one
size, and ``apply``'s chunks (:meth:`ImageStream.chunks`) are images of the first one's size.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from normstat.errors import DataError, NormstatWarning, UsageError
from normstat.sources.base import Chunk, Reducer
from normstat.sources.reading import ImageOptions

BATCH_FILES = 8
"""Images per task sent to a decoding process: enough to amortise the round trip against
decoding, few enough to keep every worker busy (docs/performance.md, image folders)."""
BATCH_BYTES = 8 * 2**20
"""...and at most about this many bytes of pixels (by the first image's size): a batch of 12 MP
photos is one photo, so the batches of pixels in flight (``apply``: two per worker) stay near
16-72 MiB a worker."""
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_JPEG_MODES = {"RGB": "RGB", "L": "Gray"}  # Pillow mode -> simplejpeg colorspace

Payload = str | bytes  # a file to open, or the encoded bytes (a tar member, a table cell)
T = TypeVar("T")


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) after torchvision's ``Resize(size)``: the shorter side becomes ``size``, the longer
    ``int(size * long / short)``, as ``_compute_resized_output_size`` does."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def crop_offsets(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop``: ``int(round((h - th) / 2.0))``."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


@dataclass(frozen=True)
class Decoding:
    """How bytes become pixels; picklable, so decoding processes receive it with each batch.
    ``turbo``: JPEGs that simplejpeg decodes to Pillow's very pixels go through it."""

    mode: str = "RGB"
    resize: int | None = None
    center_crop: tuple[int, int] | None = None
    turbo: bool = False

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.resize is not None:
            height, width = resized_size(height, width, self.resize)
        return self.center_crop if self.center_crop is not None else (height, width)

    def __call__(self, payload: Payload, into: Decoded | None = None) -> np.ndarray:
        """The pixels of one image; with ``into``, a JPEG that simplejpeg decodes is decoded
        straight into the slot that batch offers for its shape (no copy into a batch later)."""
        pixels = None
        if self.turbo and self.resize is None and self.mode in _JPEG_MODES:
            data = payload if isinstance(payload, bytes) else _read(payload)
            shape = turbo_shape(data, self.mode)
            if shape is not None:
                slot = None if into is None or self.center_crop else into.slot(shape)
                pixels = turbo_decode(data, self.mode, slot)
                if pixels is None and into is not None:
                    into.placed.discard(len(into))  # libjpeg refused it: Pillow decides
            payload = data
        if pixels is None:
            pixels = self._pillow(payload)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.dtype.byteorder == ">":
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        if self.center_crop is not None:
            pixels = _center_crop(pixels, *self.center_crop)
        return pixels

    def _pillow(self, payload: Payload) -> np.ndarray:
        from PIL import Image

        fp = io.BytesIO(payload) if isinstance(payload, bytes) else payload
        with Image.open(fp) as img:
            img.load()
            if img.mode in _SIXTEEN_BIT and self.mode != "I;16":
                raise ValueError(
                    f"16-bit image (mode {img.mode}); mode I;16 (--mode I;16) keeps its values "
                    f"(mode {self.mode} would cut them to 8 bits)"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # palette transparency notes: pixels are as asked
                conv = img if img.mode == self.mode else img.convert(self.mode)
            if self.resize is not None:
                h, w = resized_size(conv.height, conv.width, self.resize)
                if (h, w) != (conv.height, conv.width):
                    conv = conv.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(conv)


def _read(path: str) -> bytes:
    with open(path, "rb") as fp:
        return fp.read()


def turbo_available() -> bool:
    """Whether simplejpeg (the ``images`` extra) can be imported."""
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return False
    return True


def turbo_shape(data: bytes, mode: str) -> tuple[int, int, int] | None:
    """(h, w, channels) of a JPEG that simplejpeg decodes to Pillow's very pixels in ``mode``,
    or None when Pillow must decode it: not a JPEG, a colour space whose conversion Pillow does
    otherwise (CMYK, Adobe RGB; YCbCr to L, which Pillow converts from RGB), or a header that
    libjpeg complains about."""
    if data[:2] != b"\xff\xd8":
        return None
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace != "Gray" and (colorspace != "YCbCr" or mode != "RGB"):
        return None
    return height, width, 3 if mode == "RGB" else 1


def turbo_decode(data: bytes, mode: str, out: np.ndarray | None = None) -> np.ndarray | None:
    """The pixels of a JPEG by simplejpeg (into ``out``, of its shape, when given), or None when
    Pillow must decode it (:func:`turbo_shape`, or any complaint from libjpeg: Pillow then
    decides, tolerant or not, as it always does)."""
    if out is None and turbo_shape(data, mode) is None:
        return None
    import simplejpeg

    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=_JPEG_MODES[mode], buffer=out)
    except ValueError:
        return None
    return pixels if out is None else out


class Stacks:
    """Where a batch's images are decoded in place: one ``(n, *shape)`` buffer per batch, for
    the shape of its first JPEG, taken from a ring of ``depth`` buffers reused batch after batch
    (fresh pages for every batch would be faulted in each time). ``depth``: batches alive at
    once (being decoded, waiting, being reduced)."""

    def __init__(self, depth: int = 1) -> None:
        self.ring: list[np.ndarray | None] = [None] * depth
        self.turn = 0

    def batch(self, n: int) -> Decoded:
        """An empty decoded batch of ``n`` images, that takes its buffer from this ring."""
        return Decoded(self, n)

    def buffer(self, want: tuple[int, ...]) -> np.ndarray:
        self.turn = (self.turn + 1) % len(self.ring)
        buf = self.ring[self.turn]
        if buf is None or buf.shape != want:
            buf = self.ring[self.turn] = np.empty(want, np.uint8)
        return buf


class Decoded(list[tuple[str, "np.ndarray | str"]]):
    """A decoded batch, ``(where, pixels or why)`` per image; ``stack``: the buffer that the
    images in ``placed`` were decoded into, image ``i`` at ``stack[i]``."""

    def __init__(self, stacks: Stacks | None = None, n: int = 0) -> None:
        super().__init__()
        self.stacks, self.n = stacks, n
        self.stack: np.ndarray | None = None
        self.placed: set[int] = set()

    def slot(self, shape: tuple[int, int, int]) -> np.ndarray | None:
        """The place for the next image's pixels (None: another shape than the stack's)."""
        if self.stacks is None:
            return None
        if self.stack is None:
            self.stack = self.stacks.buffer((self.n, *shape))
        if self.stack.shape[1:] != shape:
            return None
        self.placed.add(len(self))
        return self.stack[len(self)]


def _center_crop(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """torchvision's ``CenterCrop``: pad with zeros when the crop is larger, then cut."""
    h, w = pixels.shape[:2]
    if crop_h > h or crop_w > w:
        dh, dw = max(crop_h - h, 0), max(crop_w - w, 0)
        pad = ((dh // 2, (dh + 1) // 2), (dw // 2, (dw + 1) // 2), (0, 0))
        pixels = np.pad(pixels, pad)
        h, w = pixels.shape[:2]
    top, left = crop_offsets(h, w, crop_h, crop_w)
    return pixels[top : top + crop_h, left : left + crop_w]


def decode_batch(
    decoding: Decoding, batch: Sequence[tuple[str, Payload]], stacks: Stacks | None = None
) -> Decoded:
    """Decode each item; a file that fails gives its error message instead of pixels. With
    ``stacks``, JPEGs of the batch's first JPEG's shape are decoded straight into one buffer."""
    out = Decoded() if stacks is None else stacks.batch(len(batch))
    for where, payload in batch:
        try:
            out.append((where, decoding(payload, out)))
        except Exception as exc:  # Pillow raises many types for damaged data; each names a file
            out.placed.discard(len(out))
            out.append((where, f"{type(exc).__name__}: {exc}"))
    return out


@dataclass
class Reduced:
    """A batch as a decoding process returns it to a fit: the step's merged value of the
    images that decoded, their sizes, the images that did not decode ``(where, why)``, and the
    first image the step could not take (another size on a kept axis) with its shape."""

    value: Any
    count: int
    sizes: list[tuple[int, ...]]
    bad: list[tuple[str, str]]
    misfit: tuple[str, tuple[int, ...]] | None = None


def reduce_decoded(
    decoded: Sequence[tuple[str, np.ndarray | str]], step: Reducer, first: int
) -> Reduced:
    """Reduce the decoded images of a batch by ``step`` and merge them in order; only that value
    leaves. Consecutive images of one size are reduced by one call (cheaper than a call per
    image: docs/performance.md), from the buffer they were decoded into, or else copied into
    one; an image of another size is
    reduced by the step for its own shape (pooled pixel by pixel on the reduced axes)."""
    steps: dict[tuple[int, ...], Reducer | None] = {}
    parts: list[Any] = []
    sizes: list[tuple[int, ...]] = []
    bad: list[tuple[str, str]] = []
    run: list[tuple[int, str, np.ndarray]] = []

    stack = getattr(decoded, "stack", None)
    placed: set[int] = getattr(decoded, "placed", set())

    def flush() -> None:
        if run:
            i0, where0, pixels0 = run[0]
            indices = [i for i, _, _ in run]
            if (
                stack is not None
                and indices == list(range(i0, i0 + len(run)))
                and placed.issuperset(indices)
            ):
                buf = stack[i0:]  # decoded in place, one after the other: no copy
            else:
                buf = _batch_buffer(len(decoded), pixels0)
                for k, (_, _, pixels) in enumerate(run):
                    buf[k] = pixels
            own = steps[tuple(pixels0.shape)]
            assert own is not None
            parts.append(own(Chunk(buf[: len(run)], where0, None, first + i0)))
            run.clear()

    for i, (where, pixels) in enumerate(decoded):
        if isinstance(pixels, str):
            bad.append((where, pixels))
            continue
        shape = tuple(pixels.shape)
        if shape not in steps:
            steps[shape] = step.for_sample(shape)
        if steps[shape] is None:
            flush()
            return Reduced(step.merge(parts), len(sizes), sizes, bad, (where, shape))
        if run and run[0][2].shape != pixels.shape:
            flush()
        run.append((i, where, pixels))
        sizes.append(shape[:2])
    flush()
    return Reduced(step.merge(parts), len(sizes), sizes, bad)


_buffers = threading.local()


def _batch_buffer(n: int, like: np.ndarray) -> np.ndarray:
    """A buffer of ``n`` images like ``like``, kept per thread and reused from batch to batch
    (fresh pages for every batch would be faulted in each time)."""
    key = (n, like.shape, like.dtype.str)
    if getattr(_buffers, "key", None) != key:
        _buffers.key, _buffers.array = key, np.empty((n, *like.shape), like.dtype)
    return _buffers.array


def _statuses(
    decoded: Sequence[tuple[str, np.ndarray | str]], first: int
) -> list[tuple[str, str | None]]:
    """Each image's failure (None when it decoded): what :meth:`ImageStream.settle` needs."""
    return [(where, p if isinstance(p, str) else None) for where, p in decoded]


def decode_then(
    finish: Callable[..., T] | None,
    decoding: Decoding,
    batch: Sequence[tuple[str, Payload]],
    *extra: Any,
) -> Any:
    """What a decoding process runs: the batch decoded, then ``finish(decoded, *extra)``
    (a fit's reduction) when given, so that only its result comes back."""
    if finish is None:
        return decode_batch(decoding, batch)
    return finish(decode_batch(decoding, batch, _STACKS), *extra)


_STACKS = Stacks()
"""A decoding process's buffer: it decodes and finishes one batch at a time."""


def _batched(items: Iterable[tuple[str, Payload]], n: int) -> Iterator[list[tuple[str, Payload]]]:
    batch: list[tuple[str, Payload]] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _pool(workers: int) -> ProcessPoolExecutor:
    """Decoding processes: forked when this process runs no other thread (cheap: nothing to
    import again, and no script is re-run), else from a fork server (forking a threaded process
    is unsafe) that imports the decoder once; other systems use their default."""
    if not sys.platform.startswith("linux"):
        return ProcessPoolExecutor(workers, initializer=_leave_interrupts)
    context: multiprocessing.context.BaseContext
    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["normstat.sources.images", "PIL.Image", "PIL.JpegImagePlugin"]
        )
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_leave_interrupts)


def _leave_interrupts() -> None:
    """Ctrl-C reaches the whole process group: the main process handles it (and shuts the
    pool down), a worker must not die printing a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ImageStream:
    """What every image source shares: options, the decoding pipeline, chunks, the record.

    Subclasses provide :meth:`_items` (``(where, payload)`` pairs from a sample index on) and
    :meth:`_first` (the first decodable image's header size)."""

    format = "images"
    kind = "array"
    dataset: str | None = None
    features: list[str] | None = None

    def __init__(
        self,
        paths: Sequence[str],
        roots: Sequence[str | None],
        specs: Sequence[str],
        options: ImageOptions,
        columns: Sequence[str] | None = None,
        known: Any = None,
    ) -> None:
        """``paths``: the files (folder images, shards, tables), ``roots[i]`` the folder
        ``paths[i]`` was found in, ``specs`` the SOURCE arguments they came from. A subclass
        sets up what its :meth:`_items` needs (:meth:`_setup`) before the first image is read;
        ``known``: what the process that planned a Dask task found there already
        (:meth:`_known`), so that a task does not find it again."""
        self.paths, self.roots, self.specs = list(paths), list(roots), list(specs)
        self.path = self.specs[0]
        self.known = known
        self._setup(columns)
        self.options = options
        turbo = options.resize is None and options.mode in _JPEG_MODES and turbo_available()
        self.decoding = Decoding(options.mode, options.resize, options.center_crop, turbo)
        self.skip_bad = options.skip_bad
        self.workers = int(options.workers or os.cpu_count() or 1)
        self.skipped: list[str] = []
        self.read = 0
        self.sizes: set[tuple[int, ...]] = set()
        self._marks: deque[tuple[int, int, int, frozenset[tuple[int, ...]]]] = deque(maxlen=256)
        self._drop: list[int] = []  # items found bad by :meth:`settle`, left out of the reads
        self._absorbed = False  # the record came from Dask tasks (:meth:`absorb`)
        self.dtype, channels = _mode_layout(options.mode, self.path)
        h, w = self._first()
        self.shape: tuple[Any, ...] = (self._count(), h, w, channels)

    @property
    def local_only(self) -> str | None:
        """Why ``apply`` on this source needs the local engine, if it does (with ``skip_bad``
        the images that do not decode are found first, :meth:`settle`, and the tasks are
        told which to leave out: they travel in the reference)."""
        return self.local_only_fit

    @property
    def local_only_fit(self) -> str | None:
        """Why a fit of this source needs the local engine, if it does (a fit's tasks report
        the images they skipped: :meth:`task_record`)."""
        if self.shape[0] is None:
            return "its images are counted only by reading them: use the local engine"
        return None

    def task_record(self) -> ImageRecord:
        """What a Dask task read: joined with the other tasks' in data order, it is the
        record a local read keeps (:meth:`absorb`)."""
        return ImageRecord(self.read, tuple(self.skipped), frozenset(self.sizes))

    def absorb(self, record: ImageRecord) -> None:
        """Take the record of the tasks that read this source, and say what they skipped."""
        self.read, self.skipped, self.sizes = record.read, list(record.skipped), set(record.sizes)
        if not self._absorbed:  # said once, however many passes (exact quantiles) read them
            self._say_skipped()
        self._absorbed = True

    def reference(self) -> ImageReference:
        """How another process reopens this source (one decoding process there)."""
        options = ImageOptions(
            self.options.mode, self.options.resize, self.options.center_crop, self.skip_bad, 1
        )
        return ImageReference(
            type(self).__module__,
            type(self).__name__,
            tuple(self.paths),
            tuple(self.roots),
            tuple(self.specs),
            options,
            getattr(self, "column", None),
            self._known(),
            tuple(self._drop),
        )

    def _known(self) -> Any:
        """What :meth:`_setup` found that a task's reopening may reuse (picklable)."""
        return None

    def _setup(self, columns: Sequence[str] | None) -> None:
        no_columns(columns, self.path)

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        raise NotImplementedError

    def _first(self) -> tuple[int, int]:
        """The output size of the first image whose header reads (a bad one is an error
        naming it, unless ``skip_bad``)."""
        for where, payload in self._items(0):
            size = self._header_size(payload)
            if size is not None:
                return size
            if not self.skip_bad:
                raise DataError("cannot read this image's header", path=where)
        raise DataError(f"no image in this {self.format} source could be read", path=self.path)

    def _count(self) -> int | None:
        return None

    def _header_size(self, payload: Payload) -> tuple[int, int] | None:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as im:
                return self.decoding.output_size(im.height, im.width)
        except Exception:
            return None

    def preferred_rows(self, target_bytes: int) -> int:
        """Images per chunk: a decoding batch (:data:`BATCH_FILES`, fewer for large images),
        so that a fit's chunks are the batches its processes reduce, whatever their number."""
        image_bytes = max(int(np.prod(self.shape[1:])) * self.dtype.itemsize, 1)
        return max(1, min(BATCH_FILES, BATCH_BYTES // image_bytes, target_bytes // image_bytes))

    def count_rows(self) -> int:
        return sum(1 for _ in self._items(0))

    def settle(self) -> None:
        """Know the samples exactly before an output is sized (``apply``): with ``skip_bad``,
        one decoding pass finds the images that do not decode; they are recorded as skipped,
        left out of :attr:`shape` and of the reads, and their labels left out of
        :meth:`companions`. Without ``skip_bad`` a bad image stops the read anyway."""
        if not self.skip_bad or self._drop:
            return
        index = 0
        for batch, statuses in self._run(_statuses, 0, None, self.preferred_rows(BATCH_BYTES)):
            for i, (where, why) in enumerate(statuses):
                if why is not None:
                    self._drop.append(index + i)
                    self.skipped.append(where)
            index += len(batch)
        self.shape = (index - len(self._drop), *self.shape[1:])
        self._say_skipped()

    def _input_index(self, k: int) -> int:
        """The item index of the ``k``-th image kept by :meth:`settle` (``k`` itself when none
        was left out): a Dask task's output rows start there."""
        if not self._drop or k == 0:
            return k
        drop = np.asarray(self._drop)
        return int(k + np.searchsorted(drop - np.arange(len(drop)), k, side="right"))

    def kept(self, values: np.ndarray) -> np.ndarray:
        """Per-item ``values`` (labels) without the items :meth:`settle` left out."""
        return np.delete(values, self._drop) if self._drop else values

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Stacks of ``rows`` consecutive images, each copied once, into its chunk: samples of
        :attr:`shape`, so an image of another size is an error naming it (``apply`` writes one
        array; a fit pools sizes through :meth:`reduced_chunks`)."""
        buf: np.ndarray | None = None
        k, first, where0 = 0, start, ""
        index = start  # in the output's numbering: the images left out by settle() skipped
        begin, end = self._input_index(start), None if stop is None else self._input_index(stop)
        for _, results in self._run(None, begin, end, self.preferred_rows(BATCH_BYTES)):
            for where, pixels in self._checked(results):
                if pixels.shape != tuple(self.shape[1:]):
                    raise DataError(
                        f"image of shape {list(pixels.shape)} differs from the first image's "
                        f"{list(self.shape[1:])}: the output is one array of images of one size "
                        "(--resize SIZE and --center-crop H W)",
                        path=where,
                    )
                if buf is not None and k == len(buf):
                    yield Chunk(buf, where0, None, first)
                    buf = None
                if buf is None:
                    buf = np.empty((rows, *pixels.shape), pixels.dtype)
                    k, first, where0 = 0, index, where
                buf[k] = pixels
                k += 1
                index += 1
                self.read += 1
                self.sizes.add(pixels.shape[:2])
        if buf is not None:
            yield Chunk(buf[:k], where0, None, first)

    def reduced_chunks(
        self, rows: int, step: Reducer, start: int = 0, stop: int | None = None
    ) -> Iterator[Chunk]:
        """A fit's chunks: each batch of ``rows`` images decoded and reduced by ``step`` in a
        decoding process, a chunk carrying the batch's merged value: the same chunks whatever
        the number of processes, so the same result, bit for bit."""
        index = start
        for batch, result in self._run(reduce_decoded, start, stop, rows, step):
            for where, why in result.bad:
                self._bad(where, why)
            if result.misfit is not None:
                where, shape = result.misfit
                raise DataError(
                    f"image of shape {list(shape)} differs from the first image's "
                    f"{list(self.shape[1:])} on an axis whose statistics are kept per position: "
                    "those need images of one size (--resize SIZE and --center-crop H W)",
                    path=where,
                )
            self.read += result.count
            self.sizes.update(result.sizes)
            index += len(batch)
            self._marks.append((index, self.read, len(self.skipped), frozenset(self.sizes)))
            yield Chunk(
                None, batch[0][0], None, index - len(batch), rows=len(batch), moments=result.value
            )
        if stop is None:
            self._say_skipped()

    def _run(
        self,
        finish: Callable[..., T] | None,
        start: int,
        stop: int | None,
        per_batch: int,
        *extra: Any,
    ) -> Iterator[tuple[list[tuple[str, Payload]], Any]]:
        """``(batch, result)`` for the batches of images ``start:stop``, in order: the batch
        decoded, then ``finish(decoded, *extra, first)`` when given (``first``: the batch's
        first image index), ``per_batch`` images a batch. With several ``workers``, both run
        in a decoding process (at most two batches each in flight); with one, this thread
        decodes while a helper thread finishes the batch before (decoders and numpy release
        the GIL), so a fit's reduction overlaps the decoding instead of following it."""
        items = self._items(start)
        if stop is not None:
            items = (item for i, item in zip(range(start, stop), items, strict=False))
        if self._drop and finish is None:  # apply after settle: the bad images left out
            drop = set(self._drop)
            items = (item for i, item in enumerate(items, start) if i not in drop)
        batches = _batched(items, per_batch)
        pool: Executor = _pool(self.workers) if self.workers > 1 else ThreadPoolExecutor(1)
        # one worker: the batch being decoded, one waiting and one being finished
        stacks = None if finish is None else Stacks(depth=3)
        pending: deque[tuple[list[tuple[str, Payload]], Future[Any]]] = deque()
        index = start
        try:
            for batch in batches:
                if self.workers > 1:
                    task = (decode_then, finish, self.decoding, batch, *extra, index)
                    pending.append((batch, pool.submit(*task)))
                else:
                    decoded = decode_batch(self.decoding, batch, stacks)
                    if finish is None:
                        yield batch, decoded
                    else:
                        pending.append((batch, pool.submit(finish, decoded, *extra, index)))
                index += len(batch)
                if len(pending) >= 2 * self.workers:
                    done, fut = pending.popleft()
                    yield done, fut.result()
            while pending:
                done, fut = pending.popleft()
                yield done, fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _say_skipped(self) -> None:
        """Images skipped by ``skip_bad`` are said, never skipped silently (and recorded)."""
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            warnings.warn(
                f"skipped {len(self.skipped)} image(s) that do not decode (skip_bad): {shown}",
                NormstatWarning,
                stacklevel=2,
            )

    def _bad(self, where: str, why: str) -> None:
        if not self.skip_bad:
            raise DataError(
                f"cannot decode this image ({why}); --skip-bad skips such files", path=where
            )
        self.skipped.append(where)

    def _checked(
        self, results: list[tuple[str, np.ndarray | str]]
    ) -> Iterator[tuple[str, np.ndarray]]:
        """The pixels of ``apply``'s images. None may fail here: with ``skip_bad`` the ones that
        do not decode were found and left out first (:meth:`settle`), so the output is sized
        for the others and one more would leave a row unwritten."""
        for where, pixels in results:
            if isinstance(pixels, str):
                if self.skip_bad:
                    raise DataError(
                        f"cannot decode this image ({pixels}), though it decoded when the "
                        "images were counted: did the file change during the run?",
                        path=where,
                    )
                raise DataError(
                    f"cannot decode this image ({pixels}); --skip-bad skips such files",
                    path=where,
                )
            yield where, pixels

    @property
    def files(self) -> list[str]:
        """The files read (what a checkpoint fingerprints)."""
        return list(self.paths)

    def state(self, samples: int) -> dict[str, Any]:
        """What :meth:`record` will say, as of the first ``samples`` images (a checkpoint's
        position: chunks read ahead of the merge are not in it yet)."""
        mark = next((m for m in reversed(self._marks) if m[0] == samples), None)
        if mark is None:
            raise ValueError(f"no record as of image {samples}")
        _, read, skipped, sizes = mark
        return {"read": read, "skipped": self.skipped[:skipped], "sizes": sorted(sizes)}

    def restore(self, state: Any) -> None:
        """Continue the record from a checkpoint's :meth:`state`."""
        try:
            read, skipped, sizes = state["read"], state["skipped"], state["sizes"]
            self.read, self.skipped = int(read), [str(p) for p in skipped]
            self.sizes = {tuple(int(v) for v in size) for size in sizes}
        except (TypeError, KeyError, ValueError):
            raise DataError(
                "the checkpoint's image record is damaged; delete the checkpoint", path=self.path
            ) from None

    def record(self) -> dict[str, Any]:
        """What the artifact's ``source`` adds for images (after the read). Read by Dask tasks
        (nothing read here), every image was reduced (no --skip-bad there) and their sizes
        were not collected: null."""
        by_others = self.read == 0 and bool(self.shape[0]) and not self._absorbed
        one = len(self.sizes) == 1
        h, w = next(iter(self.sizes)) if one else (None, None)
        read = self.shape[0] if by_others else self.read
        return {
            "paths": list(self.specs),
            "samples": "images",
            "images": read,
            "shape": [read, h, w, self.shape[3]],
            "mode": self.decoding.mode,
            "resize": self.decoding.resize,
            "center_crop": None
            if self.decoding.center_crop is None
            else list(self.decoding.center_crop),
            "skipped": list(self.skipped),
        }

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ImageRecord:
    """What a read of some images found: how many were read, the files skipped (in order) and
    the sizes seen; two adjacent reads' records join into the record of both."""

    read: int
    skipped: tuple[str, ...]
    sizes: frozenset[tuple[int, ...]]

    def joined(self, later: ImageRecord) -> ImageRecord:
        return ImageRecord(
            self.read + later.read, self.skipped + later.skipped, self.sizes | later.sizes
        )


@dataclass(frozen=True)
class ImageReference:
    """A picklable image source: its class, files and options (a Dask task's ``RowRange``)."""

    module: str
    name: str
    paths: tuple[str, ...]
    roots: tuple[str | None, ...]
    specs: tuple[str, ...]
    options: ImageOptions
    column: str | None = None
    known: Any = None
    drop: tuple[int, ...] = ()  # the items ``settle`` found bad: an apply task leaves them out

    def open(self) -> ImageStream:
        import importlib

        cls = getattr(importlib.import_module(self.module), self.name)
        columns = None if self.column is None else [self.column]
        src: ImageStream = cls(
            list(self.paths), list(self.roots), list(self.specs), self.options, columns, self.known
        )
        if self.drop:
            src._drop = list(self.drop)
            src.shape = (src.shape[0] - len(self.drop), *src.shape[1:])
        return src


def no_columns(columns: Sequence[str] | None, path: str) -> None:
    if columns is not None:
        raise UsageError(
            f"columns {list(columns)} were asked for, but images have no named columns "
            "(--columns applies to tables, and to a table's column of encoded images)",
            path=path,
        )


def _mode_layout(mode: str, path: str) -> tuple[np.dtype, int]:
    """dtype and channels of pixels in ``mode`` (L: 1 channel, RGB: 3, I;16: 16-bit...)."""
    from PIL import Image

    try:
        probe = np.asarray(Image.new(mode, (1, 1)))
    except (ValueError, KeyError):
        raise UsageError(
            f"mode (--mode) {mode!r} is not a Pillow mode (RGB, L, RGBA, I;16, ...)", path=path
        ) from None
    return probe.dtype, 1 if probe.ndim == 2 else probe.shape[2]


class ImageFiles(ImageStream):
    """Image files (a folder searched recursively, a glob, or a list) as one dataset.

    ``roots[i]`` is the folder ``paths[i]`` was found in: the image's class is its first folder
    below it, as torchvision's ``ImageFolder`` (classes sorted by name, numbered from 0)."""

    def _count(self) -> int:
        return len(self.paths)

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        return ((p, p) for p in self.paths[start:])

    def companions(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """``/labels`` (each image's class index) with the class names, for HDF5 output."""
        found = self.classes()
        if found is None:
            return {}
        names, labels = found
        return {"/labels": (self.kept(labels), {"classes": names})}

    def classes(self) -> tuple[list[str], np.ndarray] | None:
        """ImageFolder's class names and each image's class index; None when some image is not
        in a class folder."""
        names = []
        for p, root in zip(self.paths, self.roots, strict=True):
            rel = None if root is None else os.path.relpath(p, root)
            if rel is None or os.sep not in rel:
                return None
            names.append(rel.split(os.sep, 1)[0])
        classes = sorted(set(names) | _class_folders(set(self.roots)))
        index = {c: i for i, c in enumerate(classes)}
        return classes, np.array([index[n] for n in names], np.int64)


def _class_folders(roots: set[str | None]) -> set[str]:
    """Every folder directly below one root, empty ones too (they still take a class index in
    ``ImageFolder``); hidden and ``_``-prefixed folders are not read, so are not classes."""
    if len(roots) != 1 or None in roots:
        return set()
    (root,) = roots
    assert root is not None
    with os.scandir(root) as entries:
        return {e.name for e in entries if e.is_dir() and not e.name.startswith((".", "_"))}
