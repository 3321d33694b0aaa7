"""Perceptual signatures of images and the near-duplicates they reveal.

Each image gets, while validation decodes it anyway (kit.images.inspect_image), a small signature: a 32x32 gray
thumbnail, a 16x16 colour thumbnail, its size, file size and format (1,812 bytes); the statistics the shift check
uses are computed from these later, for all images at once. From the gray thumbnail come
- a perceptual hash, real-valued: the magnitudes of its lowest 2-D Fourier frequencies, which a shift of the
  picture leaves unchanged (pHash's DCT does not: a Fashion-MNIST copy shifted by one pixel was only the median
  40th most alike image by DCT hash). Candidates are each image's few most alike hashes, found in bulk with one
  matrix product per block; then
- a check of each candidate pair on the thumbnails themselves: normalised for brightness and contrast, aligned to a
  fraction of a pixel, their relative squared difference. A pair is a copy when that is small AND the copy stands
  out from the image's other candidates (a gap): Fashion-MNIST's plain trousers are all as alike as a re-encoded
  copy is to its original, but they come in crowds.
For train/test pairs (leaks) the doctor casts a wider net on the thumbnails (possible_copies) and takes a second
look at each pair that does not stand out clearly, on the two decoded images (copy_residual): among 60,000
Fashion-MNIST images some look-alikes stand out from their few candidates as well as a copy does. That net also
looks for mirrored and rotated copies (the test thumbnail in the 8 dihedral transforms) and, in sets up to
CROP_SEARCH_PAIRS, for crops (zoomed views of either thumbnail; the second look searches the box: crop_residual).

Written with numpy instead of the `imagehash` package: its hashes are bits of the DCT (not shift-invariant) and
compared alone they cannot tell copies from look-alikes in small images; the thumbnail is needed anyway for the
second check and for the doctor's label model; and it adds no dependency. Thresholds are measured in
benchmarks/doctor.py (RESULTS.md). This module imports only numpy and Pillow: it runs in kit's decoding processes.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image, ImageFilter

THUMB = 32  # side of the gray thumbnail the hash and the pair check use
COLOR = 16  # side of the colour thumbnail (the label model's and the shift check's pixels)
STAT_NAMES = ("width", "height", "aspect", "file_kb_per_megapixel", "mean_r", "mean_g", "mean_b", "std_r", "std_g",
              "std_b", "brightness", "contrast", "saturation", "sharpness", "is_jpeg", "is_png", "is_gray")
HEADER = 5  # float32s before the pixels: width, height, file bytes, format (1 JPEG, 2 PNG, 0 other), gray mode
SIGNATURE_BYTES = 4 * HEADER + THUMB * THUMB + COLOR * COLOR * 3

# Measured on planted copies (benchmarks/doctor.py, RESULTS.md; copies' hash similarity was at least 0.98): a candidate
# needs a hash similarity of at least CANDIDATE_SIMILARITY, and a pair is a near-duplicate when its thumbnail distance
# is at most DUPLICATE_DISTANCE with a gap after it (0.012 and 0.3: 95-100% recall at 95-98% precision on
# Fashion-MNIST, flowers and cats-vs-dogs; 0.015 let Fashion-MNIST's near-twins in, 77% precision).
CANDIDATE_SIMILARITY = 0.95
CANDIDATES = 5  # nearest hashes checked per image
DUPLICATE_DISTANCE = 0.012  # a pair closer than this is a copy if it also passes the ratio test
DISTINCT_RATIO = 0.3  # ... and standing out: the next candidate at least 1/0.3 times as far (see _distinct)
IDENTICAL_DISTANCE = 0.003  # a pair this close is a copy whatever the ratio (three copies of one image)
LOOSE_DISTANCE, LOOSE_RATIO = 0.02, 0.7  # the wider net when copy_residual verifies each pair (the doctor)
CLEAR_GAP = 10  # ... but a pair whose query's next candidate is this many times as far is a copy without a second
# look (Fashion-MNIST 70k: 221 of its 300 planted copies, 8 of the 2,250 look-alikes in the wider net)


def image_signature(im: Image.Image, file_bytes: int = 0) -> bytes:
    """The signature of a decoded Pillow image (any mode), packed in SIGNATURE_BYTES bytes. Cheap on purpose (it runs
    on every image validation decodes, about 60 us): Pillow resizes, nothing is computed per image in Python; the
    statistics come later, for all images at once (unpack)."""
    gray_mode = im.mode in ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    # Bilinear (antialiased when shrinking) rather than box: a 28-px image's 1-px shift must stay a smooth shift
    small = rgb.resize((64, 64), Image.BILINEAR, reducing_gap=2.0) if rgb.size != (64, 64) else rgb
    header = struct.pack("<5f", im.size[0], im.size[1], file_bytes, {"JPEG": 1, "PNG": 2}.get(im.format or "", 0),
                         gray_mode)
    return (header + small.convert("L").resize((THUMB, THUMB), Image.BILINEAR).tobytes()
            + small.resize((COLOR, COLOR), Image.BILINEAR).tobytes())


def gray_thumbnails(signatures: list[bytes]) -> np.ndarray:
    """The signatures' gray thumbnails alone (N×32×32 uint8): all that grouping near-duplicates needs."""
    raw = np.frombuffer(b"".join(signatures), dtype=np.uint8).reshape(len(signatures), SIGNATURE_BYTES)
    return raw[:, 4 * HEADER:4 * HEADER + THUMB * THUMB].reshape(len(signatures), THUMB, THUMB)


def unpack(signatures: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gray thumbnails N×32×32 uint8, colour thumbnails N×8×8×3 uint8, statistics N×len(STAT_NAMES) float32)."""
    n = len(signatures)
    raw = np.frombuffer(b"".join(signatures), dtype=np.uint8).reshape(n, SIGNATURE_BYTES)
    header = raw[:, :4 * HEADER].copy().view(np.float32).astype(np.float64)
    gray = raw[:, 4 * HEADER:4 * HEADER + THUMB * THUMB].reshape(n, THUMB, THUMB)
    color16 = raw[:, 4 * HEADER + THUMB * THUMB:].reshape(n, COLOR, COLOR, 3)
    color = color16.reshape(n, 8, 2, 8, 2, 3).mean(axis=(2, 4)).round().astype(np.uint8)
    return gray, color, _statistics(header, gray, color16)


def _statistics(header: np.ndarray, gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """STAT_NAMES for every image at once, from the signatures' header and thumbnails."""
    width, height, size, fmt, gray_mode = header.T
    pixels = color.reshape(len(color), -1, 3).astype(np.float32)
    lum = gray.astype(np.float32)
    laplacian = np.abs(4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2]
                       - lum[:, 1:-1, 2:]).mean(axis=(1, 2))
    return np.column_stack([width, height, np.log(np.maximum(width, 1) / np.maximum(height, 1)),
                            size / 1024 / np.maximum(width * height / 1e6, 1e-6), pixels.mean(axis=1),
                            pixels.std(axis=1), lum.mean(axis=(1, 2)), lum.std(axis=(1, 2)),
                            np.ptp(pixels, axis=2).mean(axis=1), laplacian, fmt == 1, fmt == 2, gray_mode
                            ]).astype(np.float32)


def perceptual_hashes(thumbs: np.ndarray, frequencies: int = 8) -> np.ndarray:
    """A shift-invariant perceptual hash, real-valued: the magnitudes of each thumbnail's lowest 2-D Fourier
    frequencies (without the mean), unit length. Unlike pHash's DCT, a magnitude spectrum does not change when the
    picture moves by a pixel (measured: a 1-px shifted Fashion-MNIST copy is the median 40th most alike by DCT hash,
    the most alike by this one)."""
    t = thumbs.astype(np.float32)
    spectrum = np.abs(np.fft.rfft2(t - t.mean(axis=(1, 2), keepdims=True)))
    k = frequencies
    low = np.concatenate([spectrum[:, :k, :k].reshape(len(t), -1), spectrum[:, -(k - 1):, 1:k].reshape(len(t), -1)],
                         axis=1)[:, 1:]
    return low / np.maximum(np.linalg.norm(low, axis=1, keepdims=True), 1e-6)


def _normalised(thumbs: np.ndarray) -> np.ndarray:
    t = thumbs.astype(np.float32)
    t -= t.mean(axis=(1, 2), keepdims=True)
    return t / np.maximum(t.std(axis=(1, 2), keepdims=True), 2.0)  # flat images: no noise blown up


MARGIN = 3  # thumbnail pixels left out round the edge, so shifts of up to 2.5 stay inside


def _moved(b: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """The inner part of thumbnails b moved by a fraction of a pixel (bilinear), |dy|, |dx| < MARGIN."""
    y0, x0 = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - y0, dx - x0
    n = THUMB - 2 * MARGIN

    def crop(oy, ox):
        return b[:, MARGIN + oy:MARGIN + oy + n, MARGIN + ox:MARGIN + ox + n]

    moved = (1 - fy) * (1 - fx) * crop(y0, x0)
    if fx:
        moved = moved + (1 - fy) * fx * crop(y0, x0 + 1)
    if fy:
        moved = moved + fy * (1 - fx) * crop(y0 + 1, x0)
    if fx and fy:
        moved = moved + fy * fx * crop(y0 + 1, x0 + 1)
    return moved


def _surface(inner: np.ndarray, b: np.ndarray, energy: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """Relative squared errors at the 3x3 whole-pixel shifts round (cy, cx): an (n, 3, 3) array."""
    return np.stack([np.stack([_error(inner, _moved(b, cy + dy, cx + dx), energy)
                               for dx in (-1, 0, 1)], axis=1) for dy in (-1, 0, 1)], axis=1)


def _error(inner: np.ndarray, moved: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Mean squared difference over the energy, per pair (einsum: one pass, no temporary arrays)."""
    difference = inner - moved
    return np.einsum("nij,nij->n", difference, difference) / (difference.shape[1] * difference.shape[2]) / energy


def _vertex(minus: np.ndarray, centre: np.ndarray, plus: np.ndarray) -> np.ndarray:
    """Where a parabola through three equally spaced errors is lowest, within half a step of the centre."""
    curvature = minus - 2 * centre + plus
    return np.clip(np.where(curvature > 1e-9, (minus - plus) / (2 * np.maximum(curvature, 1e-9)), 0), -0.5, 0.5)


def thumb_distances(a: np.ndarray, b: np.ndarray, normalised: bool = False) -> np.ndarray:
    """Per pair of thumbnails: the relative squared difference of the brightness- and contrast-normalised
    thumbnails, aligned by the shift that makes it smallest — the best whole-pixel shift (up to 2), then the
    fraction of a pixel a parabola through its neighbours points to. 0: identical; about 2: unrelated. Aligning
    to a fraction of a pixel matters: a photo shifted by one of its 128 pixels moves a quarter of a thumbnail
    pixel, which whole-pixel shifts leave as far off as a different photo of the same flower."""
    if not normalised:
        a, b = _normalised(a), _normalised(b)
    inner = a[:, MARGIN:-MARGIN, MARGIN:-MARGIN]
    energy = np.maximum(np.square(inner).mean(axis=(1, 2)), 1e-3)
    grid = _surface(inner, b, energy, 0, 0)
    centre = np.stack(np.unravel_index(grid.reshape(len(a), 9).argmin(axis=1), (3, 3)), axis=1) - 1
    for cy, cx in {tuple(c) for c in centre if c.any()}:  # the lowest at an edge: look round it instead
        pick = np.nonzero((centre == (cy, cx)).all(axis=1))[0]
        grid[pick] = _surface(inner[pick], b[pick], energy[pick], cy, cx)
    best = grid[:, 1, 1]
    oy = _vertex(grid[:, 0, 1], best, grid[:, 2, 1])
    ox = _vertex(grid[:, 1, 0], best, grid[:, 1, 2])
    for offset in {(float(y), float(x)) for y, x in zip(np.round(oy * 8) / 8, np.round(ox * 8) / 8)}:
        pick = np.nonzero((np.round(oy * 8) / 8 == offset[0]) & (np.round(ox * 8) / 8 == offset[1]))[0]
        shift = centre[pick]
        for cy, cx in {tuple(c) for c in shift}:
            sub = pick[(shift == (cy, cx)).all(axis=1)]
            moved = _moved(b[sub], cy + offset[0], cx + offset[1])
            fine = _error(inner[sub], moved, energy[sub])
            best[sub] = np.minimum(best[sub], fine)
    return best


def candidate_pairs(query: np.ndarray, base: np.ndarray, same: bool, min_similarity: float = CANDIDATE_SIMILARITY,
                    neighbours: int = CANDIDATES, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i into query, j into base): each query's `neighbours` most alike hashes (cosine), those at
    least min_similarity alike; with same=True (query is base) without the image itself."""
    rows, cols = [np.zeros(0, int)], [np.zeros(0, int)]
    k = min(neighbours, base.shape[0] - (1 if same else 0))
    chunks = -(-base.shape[0] // CHUNK)
    # zero hashes pad the base to whole chunks: a similarity of 0 is never a candidate
    base_t = np.zeros((base.shape[1], chunks * CHUNK), np.float32)
    base_t[:, :base.shape[0]] = base.T
    for start in range(0, len(query) if k > 0 else 0, block):
        sims = query[start:start + block] @ base_t
        if same:
            sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])] = -1.0
        top = _top(sims, k, chunks)
        i, slot = np.nonzero(np.take_along_axis(sims, top, axis=1) >= min_similarity)
        rows.append(i + start)
        cols.append(top[i, slot])
    return np.concatenate(rows), np.concatenate(cols)


CHUNK = 64  # columns per chunk in _top


def _top(sims: np.ndarray, k: int, chunks: int) -> np.ndarray:
    """The columns of each row's k largest values (in no order). The k largest lie in the k chunks with the largest
    maxima, so one pass for the chunks' maxima and a partition of k chunks replace a partition of the whole row
    (all candidates among 60,600 images: 20 s instead of 33)."""
    n = len(sims)
    best_chunks = np.argpartition(-sims.reshape(n, chunks, CHUNK).max(axis=2), k - 1, axis=1)[:, :k] \
        if chunks > k else np.broadcast_to(np.arange(chunks), (n, chunks))
    columns = (best_chunks[:, :, None] * CHUNK + np.arange(CHUNK)).reshape(n, -1)
    top = np.argpartition(-np.take_along_axis(sims, columns, axis=1), k - 1, axis=1)[:, :k]
    return np.take_along_axis(columns, top, axis=1)


def _distinct(i: np.ndarray, distance: np.ndarray, max_distance: float = DUPLICATE_DISTANCE,
              ratio: float = DISTINCT_RATIO) -> np.ndarray:
    """Which candidate pairs are copies: per image, its closest candidates up to the first big gap (the next one at
    least 1/DISTINCT_RATIO times as far), when they are within DUPLICATE_DISTANCE; and any all but identical pair.
    Near-twins (Fashion-MNIST's plain trousers) come in crowds at similar distances, with no gap; copies stand out.
    """
    keep = distance <= IDENTICAL_DISTANCE
    order = np.lexsort((distance, i))
    starts = np.r_[0, np.nonzero(np.diff(i[order]))[0] + 1, len(order)]
    for begin, end in zip(starts[:-1], starts[1:]):
        ranked = order[begin:end]
        d = np.r_[distance[ranked], np.inf]
        for r in range(len(ranked)):
            if d[r] > max_distance:
                break
            if d[r + 1] * ratio >= d[r]:  # a gap after r: the first r + 1 are copies
                keep[ranked[:r + 1]] = True
                break
    return keep


def _candidate_distances(query_thumbs: np.ndarray, base_thumbs: np.ndarray | None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, thumbnail distance) of every candidate pair: query against base, or (base None) within query."""
    same = base_thumbs is None
    q = perceptual_hashes(query_thumbs)
    i, j = candidate_pairs(q, q if same else perceptual_hashes(base_thumbs), same)
    query_thumbs = _normalised(query_thumbs)
    base_thumbs = query_thumbs if same else _normalised(base_thumbs)
    return i, j, _distances(query_thumbs, base_thumbs, i, j)


def _distances(query: np.ndarray, base: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """thumb_distances of the pairs (query[i], base[j]) of normalised thumbnails, in batches."""
    return np.concatenate([np.zeros(0, np.float32)] + [
        thumb_distances(query[i[s:s + 4096]], base[j[s:s + 4096]], normalised=True) for s in range(0, len(i), 4096)])


# ------------------------------------------------------------------ mirrored and rotated copies (train/test pairs)

def dihedral(x: np.ndarray, t: int) -> np.ndarray:
    """Images x (..., H, W) in one of the 8 dihedral transforms: mirrored left-right first when t >= 4, then rotated
    by 90 degrees t % 4 times (counter-clockwise). t = 0 leaves them as they are."""
    if t >= 4:
        x = x[..., ::-1]
    return np.ascontiguousarray(np.rot90(x, t % 4, axes=(-2, -1)))


def _half_turn(t: int) -> int:
    """The transform t followed by a half turn: its perceptual hash is t's own (a magnitude spectrum does not change
    when a picture turns by 180 degrees), so one hash search finds both and the thumbnails tell them apart."""
    return (t & 4) | ((t + 2) % 4)


def _zero_shift_match(query: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per pair of normalised thumbnails, their correlation unshifted (cheap: picks a transform or its half turn)."""
    return np.einsum("nij,nij->n", query, base)


def _dihedral_distances(query_thumbs: np.ndarray, base_thumbs: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance, transform) of every candidate pair, the query's thumbnail in each of the 8 dihedral transforms
    against the base's: four hash searches (a transform and its half turn share a hash); each pair's distance in the
    transform of the two that matches better unshifted (and always unchanged, t = 0, when that is one of them). A pair
    found in several transforms (a symmetric picture) keeps the closest."""
    base_hashes = perceptual_hashes(base_thumbs)
    base = _normalised(base_thumbs)
    found = []
    for t in (0, 1, 4, 5):
        turned = dihedral(query_thumbs, t)
        i, j = candidate_pairs(perceptual_hashes(turned), base_hashes, False)
        query = _normalised(turned)
        half = np.ascontiguousarray(query[:, ::-1, ::-1])
        turn = np.zeros(len(i), bool) if not len(i) else \
            _zero_shift_match(half[i], base[j]) > _zero_shift_match(query[i], base[j])
        straight = np.ones(len(i), bool) if t == 0 else ~turn  # unchanged (t = 0) is always measured
        distance = np.full(len(i), np.inf, np.float32)
        distance[straight] = _distances(query, base, i[straight], j[straight])
        transform = np.full(len(i), t)
        other = np.nonzero(turn)[0]
        half_distance = _distances(half, base, i[other], j[other])
        closer = half_distance < distance[other]
        distance[other[closer]] = half_distance[closer]
        transform[other[closer]] = _half_turn(t)
        found.append((i, j, distance, transform))
    i, j, distance, transform = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((distance, j, i))  # per pair the closest transform first
    first = np.r_[True, (np.diff(i[order]) != 0) | (np.diff(j[order]) != 0)] if len(order) else np.zeros(0, bool)
    keep = order[first]
    return i[keep], j[keep], distance[keep], transform[keep]


def near_duplicates(query_thumbs: np.ndarray, base_thumbs: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of every near-duplicate pair: query against base, or (base None) within query, i < j."""
    same = base_thumbs is None
    if len(query_thumbs) == 0 or (not same and len(base_thumbs) == 0):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    i, j, distance = _candidate_distances(query_thumbs, base_thumbs)
    keep = _distinct(i, distance)
    i, j, distance = i[keep], j[keep], distance[keep]
    if same:  # found from either side: each pair once, i < j
        pairs = {}
        for a, b, d in zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), distance.tolist()):
            pairs[(a, b)] = d
        i = np.array([p[0] for p in pairs], dtype=int)
        j = np.array([p[1] for p in pairs], dtype=int)
        distance = np.array(list(pairs.values()), dtype=np.float32)
    return i, j, distance


# ------------------------------------------------------------------ cropped copies (train/test pairs)

# the centre of one thumbnail, this fraction of its width and height, enlarged back to THUMB: how the other image of
# the pair looks when it is a crop of this one (3-20% of each side cut away; a shift of the crop is left to the
# shift-invariant hash and the alignment)
ZOOMS = ((0.9, 0.9), (0.8, 0.8), (0.8, 0.9), (0.9, 0.8))
CROPPED = 8  # transform codes from this on: a crop (crop_view), after the 8 dihedral ones
# a zoomed view's pair goes to the box search when its distance is at most CROP_DISTANCE and at most CROP_RATIO times
# the query's closest unzoomed pair, and it is among the zoomed image's CROP_RANK closest (property sets, 6 seeds:
# 0.15 / 0.7 / rank 1 found 0.77-0.93 of the copies, 0.3 / 1.5 / rank 3 0.87-0.97, precision 1.00 both)
CROP_DISTANCE, CROP_RATIO = 0.3, 1.5
CROP_RANK = 3
CROP_LOOKS = 100  # second looks at possible crops, at most this plus a tenth of the queries
CROP_SEARCH_PAIRS = 60_000_000  # query × base images at most for the crop search (eight more hash searches)


def _resampling(zoom: float, side: int = THUMB) -> np.ndarray:
    """A side×side matrix that samples the centre `zoom` of a row of `side` pixels back to `side` pixels (bilinear)."""
    position = side * (1 - zoom) / 2 + (np.arange(side) + 0.5) * zoom - 0.5
    low = np.clip(np.floor(position).astype(int), 0, side - 1)
    high = np.clip(low + 1, 0, side - 1)
    weight = np.clip(position - low, 0, 1)
    matrix = np.zeros((side, side), np.float32)
    np.add.at(matrix, (np.arange(side), low), 1 - weight)
    np.add.at(matrix, (np.arange(side), high), weight)
    return matrix


def zoomed(thumbs: np.ndarray, zoom_x: float, zoom_y: float) -> np.ndarray:
    """The centre of thumbnails (zoom_x of the width, zoom_y of the height) enlarged back to THUMB×THUMB (float32)."""
    return np.einsum("ui,nij,vj->nuv", _resampling(zoom_y), thumbs.astype(np.float32), _resampling(zoom_x),
                     optimize=True)


def _cropped_distances(query_thumbs: np.ndarray, base_thumbs: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance, crop) of candidate pairs where one image is a crop of the other: each ZOOMS view of the query
    against the base (crop k + 1: the base is a crop of the query) and of the base against the query (crop -(k + 1)),
    the closest view per pair kept."""
    query_hashes, base_hashes = perceptual_hashes(query_thumbs), perceptual_hashes(base_thumbs)
    query, base = _normalised(query_thumbs), _normalised(base_thumbs)
    found = []
    for k, (zoom_x, zoom_y) in enumerate(ZOOMS):
        query_view = zoomed(query_thumbs, zoom_x, zoom_y)
        i, j = candidate_pairs(perceptual_hashes(query_view), base_hashes, False)
        found.append((i, j, _distances(_normalised(query_view), base, i, j), np.full(len(i), k + 1)))
        base_view = zoomed(base_thumbs, zoom_x, zoom_y)
        j, i = candidate_pairs(perceptual_hashes(base_view), query_hashes, False)
        found.append((i, j, _distances(query, _normalised(base_view), i, j), np.full(len(i), -(k + 1))))
    return _closest_per_pair(*(np.concatenate(parts) for parts in zip(*found)))


def _closest_per_pair(i, j, distance, how):
    """The rows of (i, j, distance, how) with each pair's smallest distance."""
    order = np.lexsort((distance, j, i))
    first = np.r_[True, (np.diff(i[order]) != 0) | (np.diff(j[order]) != 0)] if len(order) else np.zeros(0, bool)
    keep = order[first]
    return i[keep], j[keep], distance[keep], how[keep]


def possible_copies(query_thumbs: np.ndarray, base_thumbs: np.ndarray, turned: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The wider net the doctor casts for train/test copies, each then verified on the images (copy_residual):
    (i, j, distance, clear, strict) where clear says the pair stands out so far (its query's next candidate at least
    CLEAR_GAP times as far as the pair, and within DUPLICATE_DISTANCE) that no second look is needed, and strict
    that it passes near_duplicates' own test; last the dihedral transform of the query that matches the base (see
    dihedral; with turned=False always 0: mirrored and rotated copies are not looked for), or from CROPPED on a possible
    crop for crop_residual (crop_view; sets up to CROP_SEARCH_PAIRS, turned=True): such a pair may also come as it is."""
    if len(query_thumbs) == 0 or len(base_thumbs) == 0:
        return (np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, bool),
                np.zeros(0, int))
    if turned:
        i, j, distance, transform = _dihedral_distances(query_thumbs, base_thumbs)
    else:
        i, j, distance = _candidate_distances(query_thumbs, base_thumbs)
        transform = np.zeros(len(i), int)
    result = _possible_copies(len(query_thumbs), i, j, distance, transform)
    if not turned or len(query_thumbs) * len(base_thumbs) > CROP_SEARCH_PAIRS:
        return result
    # a pair may come twice, as it is and as a crop: the second look tries both (a crop of 3% passes the thumbnails'
    # test but not the second look unless the box is searched)
    crops = _possible_crops(query_thumbs, base_thumbs, i, distance)
    falses = np.zeros(len(crops[0]), bool)
    return tuple(np.concatenate([part, extra]) for part, extra in
                 zip(result, (crops[0], crops[1], crops[2], falses, falses, crops[3])))


def _possible_crops(query_thumbs, base_thumbs, plain_i, plain_distance):
    """(i, j, distance, transform CROPPED + view) of the pairs that may be crops, for the second look (crop_residual):
    per query its closest pair in a zoomed view (_cropped_distances), if within CROP_DISTANCE and at most CROP_RATIO
    times the query's closest pair unzoomed (look-alikes are no closer zoomed; a crop is)."""
    i, j, distance, view = _cropped_distances(query_thumbs, base_thumbs)
    plain = np.full(len(query_thumbs), np.inf)
    np.minimum.at(plain, plain_i, plain_distance)
    # the image whose zoomed view was searched for: its CROP_RANK closest pairs
    searcher = np.where(view > 0, i, len(query_thumbs) + j)
    order = np.lexsort((distance, searcher))
    start = np.r_[0, np.nonzero(np.diff(searcher[order]))[0] + 1] if len(order) else np.zeros(0, int)
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    keep = np.nonzero((rank < CROP_RANK) & (distance <= CROP_DISTANCE) & (distance <= CROP_RATIO * plain[i]))[0]
    # crowds of look-alikes (Fashion-MNIST's) are alike zoomed as well: the box search (about 10 ms a pair) is kept
    # for the pairs whose zoomed view is the most closer than their unzoomed ones, at most CROP_LOOKS + n_query / 10
    limit = CROP_LOOKS + len(query_thumbs) // 10
    keep = keep[np.argsort(distance[keep] / np.maximum(plain[i[keep]], 1e-4), kind="stable")[:limit]]
    code = CROPPED + 2 * (np.abs(view) - 1) + (view < 0)
    return i[keep], j[keep], distance[keep], code[keep]


def crop_view(transform: int) -> tuple[bool, float, float]:
    """(whether the query is the crop, zoom x, zoom y) of a transform code at least CROPPED."""
    k, query_is_crop = divmod(transform - CROPPED, 2)
    return bool(query_is_crop), ZOOMS[k][0], ZOOMS[k][1]


def _possible_copies(n: int, i, j, distance, transform) -> tuple:
    """possible_copies' net on the candidate pairs of n queries (see there)."""
    keep = _distinct(i, distance, LOOSE_DISTANCE, LOOSE_RATIO)
    order = np.lexsort((distance, i))  # per query, its closest and second closest candidate
    first = np.r_[True, i[order][1:] != i[order][:-1]][:len(order)]
    second = np.r_[False, first[:-1]] & ~first
    closest, runner_up = np.full(n, np.inf), np.full(n, np.inf)
    closest[i[order[first]]] = distance[order[first]]
    runner_up[i[order[second]]] = distance[order[second]]
    following = np.where(distance <= closest[i], runner_up[i], closest[i])  # the query's next other candidate
    clear = (distance <= DUPLICATE_DISTANCE) & (following >= CLEAR_GAP * np.maximum(distance, 1e-4))
    strict = _distinct(i, distance)
    return i[keep], j[keep], distance[keep], clear[keep], strict[keep], transform[keep]


def groups_of(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A group number per item: items joined by a pair (directly or through others) share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


# ------------------------------------------------------------------ verifying a pair on the images themselves

VERIFY_SIDE = 64  # the pair is compared at the smaller image's size, its longer side at most this
VERIFY_BLUR = 1.0  # Gaussian blur (pixels) on both first: JPEG's noise goes, a look-alike's other shapes stay
VERIFY_SHIFT = 3  # whole pixels searched either way before the filter fit
VERIFY_KERNEL = 1  # the fitted filter is (2k+1)x(2k+1): it absorbs a sub-pixel shift, resampling blur, brightness
VERIFY_BLOCK = 4  # pixels: the residual is judged where it is largest, block by block (a look-alike differs locally)
VERIFY_RESIDUAL = 0.005  # a copy: in no block does the filter leave more than this fraction of the image's variance


def _verify_pixels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two gray uint8 images at the smaller one's size (longer side at most VERIFY_SIDE), blurred, as float64."""
    if a.size > b.size:
        a, b = b, a
    height, width = a.shape
    scale = min(1.0, VERIFY_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = []
    for x in (a, b):
        im = Image.fromarray(x)
        im = im if im.size == size else im.resize(size, Image.BILINEAR)
        out.append(np.asarray(im.filter(ImageFilter.GaussianBlur(VERIFY_BLUR)), np.float64))
    return out[0], out[1]


def _clipped(pixels: np.ndarray) -> np.ndarray:
    return (pixels >= 250) | (pixels <= 5)


def _filter_residual(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of b's variance that the best small filter of a (plus a constant), after the best whole-pixel
    shift, leaves unexplained in the block where it leaves most."""
    m, k = VERIFY_SHIFT + VERIFY_KERNEL, VERIFY_KERNEL
    height, width = a.shape
    target = b[m:height - m, m:width - m]
    an, bn = (a - a.mean()) / max(a.std(), 1.0), (b - b.mean()) / max(b.std(), 1.0)
    errors = {(dy, dx): np.square(bn[m:height - m, m:width - m] - an[m + dy:height - m + dy, m + dx:width - m + dx]
                                  ).mean()
              for dy in range(-VERIFY_SHIFT, VERIFY_SHIFT + 1) for dx in range(-VERIFY_SHIFT, VERIFY_SHIFT + 1)}
    dy, dx = min(errors, key=errors.get)
    x = np.column_stack([a[m + dy + u:height - m + dy + u, m + dx + v:width - m + dx + v].ravel()
                         for u in range(-k, k + 1) for v in range(-k, k + 1)])
    y = target.ravel()
    # where one image is clipped (a brighter copy's highlights, a darker one's shadows) and the other is not, no
    # filter can match them: those pixels are left out; where both are clipped (a black background) they agree
    used = _clipped(x[:, x.shape[1] // 2]) == _clipped(y)
    if used.sum() < x.shape[1] * 4:
        used[:] = True
    # centred, the constant (a brightness change) needs no column of its own and the ridge does not shrink it
    x_mean, y_mean = x[used].mean(axis=0), y[used].mean()
    xc, yc = x - x_mean, y - y_mean
    gram = xc[used].T @ xc[used]  # normal equations: nine unknowns, thousands of pixels (lstsq took 9 ms)
    coefficients = np.linalg.solve(gram + 1e-6 * np.trace(gram) * np.eye(len(gram)), xc[used].T @ yc[used])
    residual = np.where(used, np.square(yc - xc @ coefficients), 0.0).reshape(target.shape) / max(y.var(), 1.0)
    rows, cols = (residual.shape[0] // VERIFY_BLOCK) * VERIFY_BLOCK, (residual.shape[1] // VERIFY_BLOCK) * VERIFY_BLOCK
    blocks = residual[:rows, :cols].reshape(rows // VERIFY_BLOCK, VERIFY_BLOCK, cols // VERIFY_BLOCK, VERIFY_BLOCK)
    return float(blocks.mean(axis=(1, 3)).max())


def copy_residual(a: np.ndarray, b: np.ndarray) -> float:
    """How far two decoded gray images (uint8, any sizes) are from being copies of one picture: 0 for a copy
    (re-encoded, shifted by a pixel or two, resized, brighter or darker), more for a look-alike. Each is fitted as
    a small filter of the other (both ways, the smaller kept): the filter explains resampling, a sub-pixel shift and
    a brightness change, not a different sleeve. Measured (benchmarks/doctor.py): planted copies at most 0.005 on
    Fashion-MNIST 70k (97%), 12k, flowers and cats (all); 99% of the Fashion-MNIST look-alikes that reach this check
    above it."""
    a, b = _verify_pixels(a, b)
    if min(a.shape) < 2 * (VERIFY_SHIFT + VERIFY_KERNEL) + 4:  # too small to tell more than the thumbnails did
        return 0.0
    return min(_filter_residual(a, b), _filter_residual(b, a))


CROP_STEPS = (-0.06, 0.0, 0.06)  # the second look at a crop: zooms round the thumbnails' view ...
CROP_PLACES = (0.0, 0.5, 1.0)  # ... and where the box lies, as a fraction of the room it has
CROP_SEARCH_SIDE = 32  # pixels (longer side) of the coarse search for the box


def crop_residual(big: np.ndarray, small: np.ndarray, zoom_x: float, zoom_y: float) -> float:
    """copy_residual of `small` against the box of `big` that matches it best, when small may be a crop of big (about
    zoom_x of its width and zoom_y of its height, anywhere): a coarse search over boxes of zooms round those and
    places, then a finer one round the best box's edges, on blurred small images; then the full second look on it."""
    height, width = small.shape
    scale = CROP_SEARCH_SIDE / max(height, width)
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    target = _search_pixels(Image.fromarray(small).resize(size, Image.BILINEAR))
    source = Image.fromarray(big)

    def error(box) -> float:
        return float(np.square(_search_pixels(source.resize(size, Image.BILINEAR, box=box)) - target).mean())

    boxes = []
    for zx in {min(1.0, max(0.7, zoom_x + d)) for d in CROP_STEPS}:
        for zy in {min(1.0, max(0.7, zoom_y + d)) for d in CROP_STEPS}:
            w, h = zx * big.shape[1], zy * big.shape[0]
            boxes += [(px, py, px + w, py + h) for px in {p * (big.shape[1] - w) for p in CROP_PLACES}
                      for py in {p * (big.shape[0] - h) for p in CROP_PLACES}]
    errors = [error(b) for b in boxes]
    box, best = list(boxes[int(np.argmin(errors))]), min(errors)
    for step in (0.02, 0.01, 0.005):  # each edge in turn, a fraction of big's side either way, while it helps
        moved = True
        while moved:
            moved = False
            for edge in range(4):
                for sign in (-1, 1):
                    trial = list(box)
                    trial[edge] = min(max(trial[edge] + sign * step * big.shape[1 - edge % 2], 0.0),
                                      float(big.shape[1 - edge % 2]))
                    if trial != box and trial[0] < trial[2] - 4 and trial[1] < trial[3] - 4:
                        e = error(tuple(trial))
                        if e < best:
                            box, best, moved = trial, e, True
    return copy_residual(np.asarray(source.resize((width, height), Image.BILINEAR, box=tuple(box))), small)


def _search_pixels(im: Image.Image) -> np.ndarray:
    """Blurred, normalised pixels of a small image for the crop search."""
    x = np.asarray(im.filter(ImageFilter.GaussianBlur(0.7)), np.float32)
    return (x - x.mean()) / max(x.std(), 1.0)
