"""Catalog and query vectors for the index benchmarks, cached under ``.cache/bench/`` (git-ignored).

* **real**: the shipped featurizer (EfficientNet-Lite0 int8) on real product pictures — Fashion-MNIST
  (Debian ``dataset-fashion-mnist``, 28 px upscaled to 96 px like ``model.finetune.fashion_mnist``) and the
  sample photos — one vector per item; queries are camera-like views (``model.data.views``) of random items.
  Featurized in chunks that are cached as they finish, so an interrupted run resumes.
* **spectral**: synthetic vectors with the real ones' structure at any size: items drawn around product
  families with the real items' covariance spectrum (half of it between families), 10 % near-duplicates
  (colour variants: a sibling plus a little noise), and queries that are an item plus noise with the
  spectrum of the real camera views' residuals (half of them), or a new member of an item's family (the
  other half: near-ties, the hard case for a graph index). Isotropic noise (``bench.search``) has a flat
  spectrum, which makes any projection look useless and any quantizer look better than it is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.retrieval.head import ProjectionHead

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"
MODELS = REPO / ".cache" / "models"
FASHION = Path("/usr/share/datasets/fashion-mnist")
CHUNK = 1000
FAMILY_SIZE = 50
NEAR_DUPLICATES = 0.10
BLOCK = 50_000
"""Rows generated (and projected) at a time: 50k × 1280 float32 is 256 MB."""


@dataclass
class VectorSet:
    name: str
    base: np.ndarray
    """``[N, D]`` float32 unit vectors (a memory map for the large synthetic sets)."""
    queries: np.ndarray
    """``[Q, D]`` float32 unit vectors."""
    head: ProjectionHead | None = None
    """The projection head ``base`` and ``queries`` went through (:func:`head_set`); None: the model's space."""


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --- real ------------------------------------------------------------------------------------------------
def _fashion_images(count: int) -> np.ndarray:
    from model.finetune.fashion_mnist import read_idx

    train = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    test = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    images = np.concatenate([train, test])
    if count > len(images):
        raise ValueError(f"Fashion-MNIST holds {len(images)} images, {count} asked for")
    return images[:count]


def _bgr96(gray: np.ndarray) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(np.repeat(cv2.resize(gray, (96, 96), interpolation=cv2.INTER_CUBIC)[..., None], 3, 2))


def _featurize_cached(name: str, images: list[np.ndarray], featurizer, progress: bool = True) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Vectors of ``images`` in chunks of :data:`CHUNK`, each chunk cached on its own (resumable)."""

    from model.prepare import prepare_frame

    folder = CACHE / "real" / f"{name}-{featurizer.model_id}"
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in tqdm(range(0, len(images), CHUNK), desc=name, unit="chunk", disable=not progress):
        path = folder / f"{start:07d}-{min(len(images), start + CHUNK):07d}.npy"
        if not path.exists():
            chunk = images[start : start + CHUNK]
            prepared = np.stack([prepare_frame(image, featurizer.input_size) for image in chunk])
            vectors = np.concatenate([featurizer.featurize(prepared[i : i + 32]) for i in range(0, len(prepared), 32)])
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors.astype(np.float32))
            tmp.replace(path)
        parts.append(np.load(path))
    return np.concatenate(parts)


def real_set(items: int, queries: int = 1000, seed: int = 7, progress: bool = True) -> VectorSet:
    """``items`` real catalog vectors (sample photos first, then Fashion-MNIST) and ``queries`` camera views."""
    from model.data.photos import load_photos
    from model.data.views import camera_view
    from model.featurizer import Featurizer

    featurizer = Featurizer(MODELS / "efficientnet-lite0-int8.onnx", threads=2)
    photos = [image for _, image in load_photos()][:items]
    catalog = photos + [_bgr96(g) for g in _fashion_images(items - len(photos))]
    base = _featurize_cached(f"items-{len(photos)}p", catalog, featurizer, progress)[:items]
    rng = np.random.default_rng(seed)
    picks = rng.choice(items, queries, replace=False)
    views = [camera_view(catalog[i], np.random.default_rng([seed, int(i)])) for i in picks]
    name = f"views-{items}-{queries}-{seed}"
    query_vectors = _featurize_cached(name, views, featurizer, progress)
    return VectorSet(f"real {items:,}", _unit(base), _unit(query_vectors))


def real_view_pairs(items: int, queries: int = 1000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(item vectors, the residuals ``view − item`` of the camera views): what the spectral model is fitted on."""
    data = real_set(items, queries, seed, progress=False)
    picks = np.random.default_rng(seed).choice(items, queries, replace=False)
    return data.base, data.queries - data.base[picks]


# --- spectral synthetic ----------------------------------------------------------------------------------
@dataclass
class Spectrum:
    mean: np.ndarray
    between: np.ndarray
    """``[D, D]``: rows scaled principal directions, ``z @ between`` has the items' covariance."""
    view: np.ndarray
    """``[D, D]``: same for the camera views' residuals."""

    @classmethod
    def fit(cls, items: np.ndarray, residuals: np.ndarray) -> Spectrum:
        return cls(items.mean(0), _root(np.cov(items, rowvar=False)), _root(np.cov(residuals, rowvar=False)))

    @classmethod
    def cached(cls, items: np.ndarray, residuals: np.ndarray) -> Spectrum:
        """:meth:`fit` once per input, kept under the cache: the fit is not reproducible run to run (the same real
        vectors gave four different results on 2026-11-30, by BLAS thread count and eigenvector signs), and every
        synthetic set is keyed by the fitted spectrum, so each run generated (and stored, 0.6 GB at 100k) new sets."""
        key = hashlib.sha1(np.ascontiguousarray(items).tobytes() + np.ascontiguousarray(residuals).tobytes())
        path = CACHE / "spectrum" / f"fit-{key.hexdigest()[:10]}.npz"
        if path.exists():
            with np.load(path) as saved:
                return cls(saved["mean"], saved["between"], saved["view"])
        spectrum = cls.fit(items, residuals)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, mean=spectrum.mean, between=spectrum.between, view=spectrum.view)
        tmp.replace(path)
        return spectrum


def _root(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))).T.astype(np.float32)


def spectral_set(n: int, spectrum: Spectrum, queries: int = 1000, seed: int = 0) -> VectorSet:
    """``n`` items (memory-mapped from the cache when large) and ``queries`` views / new family members."""
    path = _spectral_path(n, spectrum, seed)
    families = _families(spectrum, max(1, n // FAMILY_SIZE), seed)
    if not path.exists():
        dim = spectrum.mean.shape[0]
        _write_blocks(path, (n, dim), (block for _, block in _spectral_blocks(spectrum, families, n, seed)))
    base = np.load(path, mmap_mode="r")
    rng, picks = _query_picks(n, queries, seed)
    return VectorSet(f"spectral {n:,}", base, _queries(np.asarray(base[picks]), spectrum, families, rng))


def _spectral_path(n: int, spectrum: Spectrum, seed: int) -> Path:
    key = hashlib.sha1(spectrum.mean.tobytes() + spectrum.between.tobytes()).hexdigest()[:10]
    return CACHE / "spectral" / f"items-{n}-{spectrum.mean.shape[0]}-{key}-{seed}.npy"


def _spectral_blocks(spectrum: Spectrum, families: np.ndarray, n: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, items) in blocks of :data:`BLOCK`: the same items whether written whole or projected."""
    rng = np.random.default_rng([seed, 1])
    for start in range(0, n, BLOCK):
        yield start, _items(spectrum, families, min(BLOCK, n - start), rng)


def _write_blocks(path: Path, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> None:
    """A ``.npy`` memory map filled block by block, renamed into place when complete (a stopped run leaves none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    start = 0
    for block in blocks:
        out[start : start + len(block)] = block
        start += len(block)
    out.flush()
    del out
    tmp.replace(path)


def _families(spectrum: Spectrum, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0])
    z = rng.standard_normal((count, spectrum.mean.shape[0]), dtype=np.float32)
    return spectrum.mean + np.sqrt(0.5, dtype=np.float32) * (z @ spectrum.between)


def _items(spectrum: Spectrum, families: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    dim = spectrum.mean.shape[0]
    which = rng.integers(0, len(families), count)
    z = rng.standard_normal((count, dim), dtype=np.float32)
    items = families[which] + np.sqrt(0.5, dtype=np.float32) * (z @ spectrum.between)
    # Near-duplicates: a colour variant is its sibling plus a little of the camera-view noise.
    dup = np.flatnonzero(rng.uniform(size=count) < NEAR_DUPLICATES)
    dup = dup[dup > 0]
    sibling = rng.integers(0, dup, len(dup)) if len(dup) else dup
    noise = rng.standard_normal((len(dup), dim), dtype=np.float32) @ spectrum.view
    items[dup] = items[sibling] + 0.5 * noise
    return _unit(items)


def _query_picks(n: int, count: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    """The query generator and the (sorted) items the queries are made from."""
    rng = np.random.default_rng([seed, 2])
    return rng, np.sort(rng.choice(n, count, replace=False))


def _queries(items: np.ndarray, spectrum: Spectrum, families: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera view (the item plus view noise) or a new member of the item's family, for each of ``items``."""
    count, dim = items.shape
    items = items.astype(np.float32)
    noise = rng.standard_normal((count, dim), dtype=np.float32) @ spectrum.view
    new_member = np.asarray(rng.uniform(size=count) < 0.5)
    # A new member of the item's family: its nearest family centre plus fresh within-family spread.
    centre = families[np.argmax(items @ _unit(families).T, axis=1)]
    fresh = centre + np.sqrt(0.5, dtype=np.float32) * (
        rng.standard_normal((count, dim), dtype=np.float32) @ spectrum.between
    )
    # Fitted on unit vectors, the spectrum gives unnormalized draws of about unit norm: noise keeps its real size.
    return _unit(np.where(new_member[:, None], fresh, items) + noise)


# --- spectral, projected through an adapted catalog's head ------------------------------------------------
def head_set(n: int, spectrum: Spectrum, head: ProjectionHead, queries: int = 1000, seed: int = 0) -> VectorSet:
    """The spectral set of ``n`` items and its queries, projected through ``head`` (``catalog adapt``'s index
    space: an adapted catalog's index holds ``head.project(item)`` and the search projects each query alike).

    Projected block by block as the items are generated (or read from the cached full-dimension file), so a
    2M-item set never needs its 10 GB of full vectors on disk; identical to projecting ``spectral_set``.
    """
    dim = spectrum.mean.shape[0]
    path = CACHE / "head" / f"{_spectral_path(n, spectrum, seed).stem}-head{head.sha256[:10]}.npy"
    picked_path = path.with_name(f"{path.stem}-picked-{queries}.npy")
    families = _families(spectrum, max(1, n // FAMILY_SIZE), seed)
    rng, picks = _query_picks(n, queries, seed)
    if not (path.exists() and picked_path.exists()):
        full = _spectral_path(n, spectrum, seed)
        blocks: Iterator[tuple[int, np.ndarray]]
        if full.exists():
            source = np.load(full, mmap_mode="r")
            blocks = ((s, np.asarray(source[s : s + BLOCK])) for s in range(0, n, BLOCK))
        else:
            blocks = _spectral_blocks(spectrum, families, n, seed)
        picked = np.empty((len(picks), dim), np.float32)

        def projected() -> Iterator[np.ndarray]:
            for start, block in tqdm(blocks, total=-(-n // BLOCK), desc=f"head-{n}", unit="block"):
                inside = (picks >= start) & (picks < start + len(block))
                picked[inside] = block[picks[inside] - start]
                yield head.project(block)

        _write_blocks(path, (n, head.out_dim), projected())
        np.save(picked_path, picked)
    base = np.load(path, mmap_mode="r")
    query_vectors = head.project(_queries(np.load(picked_path), spectrum, families, rng))
    return VectorSet(f"spectral {n:,} → head {head.out_dim}", base, query_vectors, head)


HEAD_COPY = CACHE / "head" / "head.npz"
HEAD_SEARCH = ".cache/heldup-eval/adapt/efficientnet-lite0-avg-*/head-checkpoint.npz"
"""Where ``visual-search model eval --heldup`` leaves the chosen default's catalog head (43 items, 256-d)."""


def bench_head() -> tuple[ProjectionHead, str]:
    """(head, where it came from): ``$BENCH_HEAD`` (a ``head.npz`` of an adapted index folder, or a
    ``head-checkpoint.npz``), else the copy cached in :data:`HEAD_COPY`, else :data:`HEAD_SEARCH` in this
    checkout. The first one found is copied into :data:`HEAD_COPY`, so later runs use the same weights."""
    given = os.environ.get("BENCH_HEAD")
    found = sorted(REPO.glob(HEAD_SEARCH))
    source = Path(given) if given else HEAD_COPY if HEAD_COPY.exists() else found[0] if found else None
    if source is None:
        raise FileNotFoundError(
            f"no projection head: set BENCH_HEAD to an adapted index's head.npz ('visual-search catalog adapt'),"
            f" or run 'visual-search model eval --heldup' (writes {HEAD_SEARCH})"
        )
    with np.load(source, allow_pickle=False) as data:
        head = ProjectionHead(data["weight"], data["mean"])
    if source != HEAD_COPY:
        HEAD_COPY.parent.mkdir(parents=True, exist_ok=True)
        HEAD_COPY.write_bytes(head.to_bytes())
    return head, str(source)
