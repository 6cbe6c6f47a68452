"""Procedurally generated images for pretraining the backbone (formula-driven supervision).

No third-party image is involved: every image is a formula evaluated from ``(seed, index)``,
so a pretraining run is reproducible and needs no disk. A class is (generator family,
parameter bin): textures (noise of several spectra, brushed/rolled metal, grains, gratings,
weaves, tiles, cells, dots, fibres, gradients, labyrinths, speckle) and surfaces with one
synthetic defect (scratches, cracks, crazing, spots, pits, holes, dents, stains, inclusions,
patches, scale, frayed edges, streaks, clusters, uneven lighting, blur) at two sizes. Each
image then gets a random orientation, scale, contrast, brightness, gamma, noise and either
stays gray or is coloured, so that the class is the only thing the network can rely on.

numpy only (no torch, no Qt): ``render(seed, index, size)`` -> (uint8 H x W x 3, class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

Array = np.ndarray
Rng = np.random.Generator


# ------------------------------------------------------------------ primitives
def _freq(s: int) -> tuple[Array, Array]:
    fy = np.fft.fftfreq(s)[:, None]
    fx = np.fft.rfftfreq(s)[None, :]
    return fy, fx


def _norm(a: Array) -> Array:
    a = a - a.min()
    m = a.max()
    return a / m if m > 1e-8 else np.zeros_like(a)


def _spectral(rng: Rng, s: int, amp: Callable[[Array, Array], Array]) -> Array:
    """White noise shaped in the Fourier domain by ``amp(fy, fx)``; normalized to [0, 1]."""
    fy, fx = _freq(s)
    white = np.fft.rfft2(rng.standard_normal((s, s)))
    a = amp(fy, fx)
    a[0, 0] = 0.0
    return _norm(np.fft.irfft2(white * a, s=(s, s)))


def power_noise(rng: Rng, s: int, beta: float) -> Array:
    def amp(fy: Array, fx: Array) -> Array:
        f = np.sqrt(fy * fy + fx * fx)
        return np.where(f > 0, np.maximum(f, 1.0 / s) ** (-beta / 2), 0.0)

    return _spectral(rng, s, amp)


def oriented_noise(rng: Rng, s: int, ratio: float, beta: float) -> Array:
    """Noise stretched ``ratio`` times along a random direction (brushed/rolled metal)."""
    th = rng.uniform(0, np.pi)
    c, si = np.cos(th), np.sin(th)

    def amp(fy: Array, fx: Array) -> Array:
        u = fx * c + fy * si
        v = -fx * si + fy * c
        f = np.sqrt(u * u * ratio**2 + v * v)
        return np.where(f > 0, np.maximum(f, 1.0 / s) ** (-beta / 2), 0.0)

    return _spectral(rng, s, amp)


def bandpass_noise(rng: Rng, s: int, cycles: float, width: float = 0.25) -> Array:
    f0 = cycles / s

    def amp(fy: Array, fx: Array) -> Array:
        f = np.sqrt(fy * fy + fx * fx)
        return np.asarray(np.exp(-0.5 * (np.log(np.maximum(f, 1e-6) / f0) / width) ** 2))

    return _spectral(rng, s, amp)


def blur(a: Array, sigma: float) -> Array:
    """Gaussian blur (periodic borders) through the FFT; cheap at these sizes."""
    if sigma <= 0.05:
        return a
    s0, s1 = a.shape
    fy = np.fft.fftfreq(s0)[:, None]
    fx = np.fft.rfftfreq(s1)[None, :]
    h = np.exp(-2 * (np.pi * sigma) ** 2 * (fy * fy + fx * fx))
    return np.asarray(np.fft.irfft2(np.fft.rfft2(a) * h, s=a.shape))


def _grid(s: int) -> tuple[Array, Array]:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    return yy, xx


def seg_distance(s: int, p0: Array, p1: Array) -> Array:
    """Distance of every pixel to the nearest of K segments p0[k] -> p1[k] (K x 2, y/x)."""
    yy, xx = _grid(s)
    p0 = np.asarray(p0, np.float32).reshape(-1, 2)
    p1 = np.asarray(p1, np.float32).reshape(-1, 2)
    d = p1 - p0
    ll = np.maximum((d * d).sum(1), 1e-6)[:, None, None]
    py = yy[None] - p0[:, 0, None, None]
    px = xx[None] - p0[:, 1, None, None]
    t = np.clip((py * d[:, 0, None, None] + px * d[:, 1, None, None]) / ll, 0, 1)
    dy = py - t * d[:, 0, None, None]
    dx = px - t * d[:, 1, None, None]
    return np.asarray(np.sqrt(dy * dy + dx * dx).min(0))


def line_mask(s: int, p0: Array, p1: Array, width: float) -> Array:
    """Anti-aliased mask (0..1) of segments of the given width."""
    return np.clip(width / 2 + 0.5 - seg_distance(s, p0, p1), 0, 1)


def discs(s: int, centers: ArrayLike, radii: ArrayLike, soft: float = 0.7) -> Array:
    yy, xx = _grid(s)
    c = np.asarray(centers, np.float32).reshape(-1, 2)
    r = np.asarray(radii, np.float32).reshape(-1)
    d = np.sqrt((yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2)
    m = np.clip((r[:, None, None] - d) / soft + 0.5, 0, 1)
    return np.asarray(m.max(0))


def ellipses(s: int, centers: Array, axes: Array, angles: Array) -> Array:
    yy, xx = _grid(s)
    c = np.asarray(centers, np.float32).reshape(-1, 2)
    ax = np.asarray(axes, np.float32).reshape(-1, 2)
    th = np.asarray(angles, np.float32).reshape(-1)
    py = yy[None] - c[:, 0, None, None]
    px = xx[None] - c[:, 1, None, None]
    ct, st = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
    u = (px * ct + py * st) / ax[:, 0, None, None]
    v = (-px * st + py * ct) / ax[:, 1, None, None]
    r = np.sqrt(u * u + v * v)
    m = np.clip((1 - r) * ax.min(1)[:, None, None] / 0.7 + 0.5, 0, 1)
    return np.asarray(m.max(0))


def voronoi(rng: Rng, s: int, n: int) -> tuple[Array, Array]:
    """(distance to the nearest seed, edge-ness = 2nd nearest - nearest) for about n seeds,
    one jittered seed per cell of a periodic grid (Worley noise: 9 candidates per pixel)."""
    g = max(2, round(float(np.sqrt(n))))
    cell = s / g
    jitter = rng.uniform(0, 1, (g, g, 2))
    rows, cols = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    pts = (np.stack([rows, cols], -1) + jitter) * cell  # [cell y, cell x, (y, x)]
    yy, xx = _grid(s)
    cy = np.minimum((yy / cell).astype(int), g - 1)
    cx = np.minimum((xx / cell).astype(int), g - 1)
    ds = []
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            ny, nx = cy + oy, cx + ox
            p = pts[ny % g, nx % g]
            py = p[..., 0] + (ny // g) * s  # periodic copies across the border
            px = p[..., 1] + (nx // g) * s
            ds.append(np.sqrt((yy - py) ** 2 + (xx - px) ** 2))
    d = np.partition(np.stack(ds), 1, axis=0)[:2]
    return d[0], d[1] - d[0]


def random_walk(rng: Rng, s: int, steps: int, step_len: float, start: Array | None = None,
                turn: float = 0.5) -> tuple[Array, Array]:
    """A crack-like polyline: segment starts and ends."""
    p = rng.uniform(0.2 * s, 0.8 * s, 2) if start is None else np.asarray(start, np.float64)
    a = rng.uniform(0, 2 * np.pi)
    pts = [p.copy()]
    for _ in range(steps):
        a += rng.normal(0, turn)
        p = p + step_len * np.array([np.sin(a), np.cos(a)])
        pts.append(p.copy())
    arr = np.array(pts)
    return arr[:-1], arr[1:]


def _rand_segments(rng: Rng, s: int, k: int, length: float, angle: float | None = None,
                   spread: float = np.pi) -> tuple[Array, Array]:
    c = rng.uniform(-0.1 * s, 1.1 * s, (k, 2))
    base = rng.uniform(0, np.pi) if angle is None else angle
    a = base + rng.uniform(-spread / 2, spread / 2, k)
    half = 0.5 * length * rng.uniform(0.6, 1.4, k)
    d = np.stack([np.sin(a) * half, np.cos(a) * half], 1)
    return c - d, c + d


# ------------------------------------------------------------------ texture families
def _t_spectral(rng: Rng, s: int, beta: float) -> Array:
    return power_noise(rng, s, beta + rng.uniform(-0.2, 0.2))


def _t_oriented(rng: Rng, s: int, ratio: float, beta: float) -> Array:
    return oriented_noise(rng, s, ratio * rng.uniform(0.8, 1.25), beta)


def _t_bandpass(rng: Rng, s: int, cycles: float) -> Array:
    return bandpass_noise(rng, s, cycles * s / 64 * rng.uniform(0.85, 1.15))


def _t_grating(rng: Rng, s: int, cycles: float, square: bool) -> Array:
    yy, xx = _grid(s)
    th = rng.uniform(0, np.pi)
    f = cycles * rng.uniform(0.85, 1.15) / s
    ph = 2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 2 * np.pi)
    g = np.sin(ph)
    if square:
        g = np.tanh(6 * g)
    return _norm(g + 0.3 * power_noise(rng, s, 2.0))


def _t_weave(rng: Rng, s: int, cycles: float) -> Array:
    yy, xx = _grid(s)
    th = rng.uniform(0, np.pi)
    f = cycles * rng.uniform(0.85, 1.15) / s
    u = xx * np.cos(th) + yy * np.sin(th)
    v = -xx * np.sin(th) + yy * np.cos(th)
    a = np.sin(2 * np.pi * f * u)
    b = np.sin(2 * np.pi * f * v)
    over = np.sign(np.sin(np.pi * f * u) * np.sin(np.pi * f * v))
    w = np.where(over > 0, np.abs(a), np.abs(b))
    return _norm(w + 0.2 * power_noise(rng, s, 1.5))


def _t_tiles(rng: Rng, s: int, n: float) -> Array:
    yy, xx = _grid(s)
    th = rng.choice([0.0, np.pi / 4]) + rng.uniform(-0.2, 0.2)
    p = s / (n * rng.uniform(0.85, 1.15))
    u = (xx * np.cos(th) + yy * np.sin(th)) / p
    v = (-xx * np.sin(th) + yy * np.cos(th)) / p
    iu, iv = np.floor(u), np.floor(v)
    shade = np.sin(iu * 12.9898 + iv * 78.233 + rng.uniform(0, 100)) * 0.5 + 0.5
    grout = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * p
    g = np.where(grout < 1.0, 0.0, 0.4 + 0.6 * shade)
    return _norm(g + 0.15 * power_noise(rng, s, 1.0))


def _t_cells(rng: Rng, s: int, n: int, edges: bool) -> Array:
    k = max(3, int(n * rng.uniform(0.8, 1.25)))
    d1, gap = voronoi(rng, s, k)
    if edges:
        return _norm(-np.exp(-gap / 0.8) + 0.15 * power_noise(rng, s, 1.5))
    return _norm(d1 + 0.2 * power_noise(rng, s, 2.0))


def _t_dots(rng: Rng, s: int, density: float, radius: float) -> Array:
    r = radius * s / 64
    k = max(1, int(density * s * s / (np.pi * r * r) * rng.uniform(0.7, 1.3)))
    k = min(k, 400)
    m = discs(s, rng.uniform(0, s, (k, 2)), r * rng.uniform(0.7, 1.3, k))
    return _norm(m + 0.2 * power_noise(rng, s, 2.0))


def _t_fibres(rng: Rng, s: int, length: float, count: int) -> Array:
    k = int(count * rng.uniform(0.7, 1.3))
    p0, p1 = _rand_segments(rng, s, k, length * s, spread=rng.uniform(0.3, np.pi))
    m = line_mask(s, p0, p1, rng.uniform(0.8, 1.8))
    return _norm(m + 0.2 * power_noise(rng, s, 1.8))


def _t_gradient(rng: Rng, s: int, radial: bool) -> Array:
    yy, xx = _grid(s)
    if radial:
        c = rng.uniform(0, s, 2)
        g = np.sqrt((yy - c[0]) ** 2 + (xx - c[1]) ** 2)
    else:
        th = rng.uniform(0, 2 * np.pi)
        g = xx * np.cos(th) + yy * np.sin(th)
    return _norm(_norm(g) + 0.08 * power_noise(rng, s, 1.0))


def _t_labyrinth(rng: Rng, s: int, cycles: float) -> Array:
    b = bandpass_noise(rng, s, cycles * s / 64, 0.15)
    return _norm(np.tanh(8 * (b - 0.5)) + 0.1 * power_noise(rng, s, 1.0))


def _t_speckle(rng: Rng, s: int, p: float) -> Array:
    base = power_noise(rng, s, 2.5) * 0.4 + 0.3
    u = rng.random((s, s))
    base = np.where(u < p / 2, 0.0, np.where(u > 1 - p / 2, 1.0, base))
    return base


# ------------------------------------------------------------------ defect families
def _surface(rng: Rng, s: int) -> Array:
    """A plain background surface for a defect: quiet noise, brushed metal or grains."""
    kind = rng.integers(0, 4)
    if kind == 0:
        t = power_noise(rng, s, rng.uniform(1.8, 3.2))
    elif kind == 1:
        t = oriented_noise(rng, s, rng.uniform(3, 12), rng.uniform(1, 2))
    elif kind == 2:
        t = bandpass_noise(rng, s, rng.uniform(8, 24) * s / 64)
    else:
        t = power_noise(rng, s, rng.uniform(0.5, 1.2))
    return 0.5 + (t - 0.5) * rng.uniform(0.15, 0.45)


def _polarity(rng: Rng) -> float:
    return -1.0 if rng.random() < 0.6 else 1.0


def _apply(base: Array, mask: Array, rng: Rng, strength: tuple[float, float]) -> Array:
    return base + _polarity(rng) * rng.uniform(*strength) * mask


def _d_clean(rng: Rng, s: int, big: bool) -> Array:
    return _surface(rng, s)


def _d_scratch(rng: Rng, s: int, big: bool) -> Array:
    length = s * (rng.uniform(0.5, 1.2) if big else rng.uniform(0.15, 0.35))
    p0, p1 = _rand_segments(rng, s, 1, length, spread=0.0)
    p0, p1 = np.clip(p0, 0, s), np.clip(p1, 0, s)
    m = line_mask(s, p0, p1, rng.uniform(0.8, 2.0))
    return _apply(_surface(rng, s), m, rng, (0.25, 0.6))


def _d_scratches(rng: Rng, s: int, big: bool) -> Array:
    k = int(rng.integers(3, 8))
    length = s * (rng.uniform(0.4, 0.9) if big else rng.uniform(0.1, 0.25))
    p0, p1 = _rand_segments(rng, s, k, length, spread=0.4)
    m = line_mask(s, p0, p1, rng.uniform(0.7, 1.5))
    return _apply(_surface(rng, s), m, rng, (0.2, 0.5))


def _d_crack(rng: Rng, s: int, big: bool) -> Array:
    steps = int(rng.integers(12, 30) if big else rng.integers(4, 9))
    p0, p1 = random_walk(rng, s, steps, s / 28, turn=0.6)
    if big and rng.random() < 0.7:
        b0, b1 = random_walk(rng, s, steps // 2, s / 32, start=p1[len(p1) // 2], turn=0.7)
        p0, p1 = np.concatenate([p0, b0]), np.concatenate([p1, b1])
    m = line_mask(s, p0, p1, rng.uniform(0.8, 2.2))
    return _surface(rng, s) - rng.uniform(0.3, 0.6) * m


def _d_crazing(rng: Rng, s: int, big: bool) -> Array:
    _, gap = voronoi(rng, s, int(rng.integers(20, 50) if big else rng.integers(60, 120)))
    net = np.exp(-gap / 0.7)
    keep = power_noise(rng, s, 2.0) > rng.uniform(0.35, 0.55)
    return _surface(rng, s) - rng.uniform(0.2, 0.45) * net * keep


def _d_spot(rng: Rng, s: int, big: bool) -> Array:
    r = s * (rng.uniform(0.12, 0.25) if big else rng.uniform(0.03, 0.07))
    m = blur(discs(s, rng.uniform(0.2 * s, 0.8 * s, (1, 2)), [r]), r * 0.3)
    return _apply(_surface(rng, s), m, rng, (0.2, 0.5))


def _d_pits(rng: Rng, s: int, big: bool) -> Array:
    k = int(rng.integers(15, 60) if big else rng.integers(3, 10))
    r = s / 64 * rng.uniform(0.7, 1.6, k)
    m = discs(s, rng.uniform(0, s, (k, 2)), r)
    return _surface(rng, s) - rng.uniform(0.3, 0.6) * m


def _d_hole(rng: Rng, s: int, big: bool) -> Array:
    r = s * (rng.uniform(0.1, 0.22) if big else rng.uniform(0.03, 0.06))
    c = rng.uniform(0.25 * s, 0.75 * s, (1, 2))
    inner = discs(s, c, [r], soft=0.5)
    rim = discs(s, c, [r + max(1.0, 0.2 * r)]) - inner
    base = _surface(rng, s)
    out = base * (1 - inner) + inner * rng.uniform(0.0, 0.1) + rim * rng.uniform(0.15, 0.35)
    return np.asarray(out)


def _d_dent(rng: Rng, s: int, big: bool) -> Array:
    r = s * (rng.uniform(0.15, 0.3) if big else rng.uniform(0.05, 0.1))
    yy, xx = _grid(s)
    c = rng.uniform(0.25 * s, 0.75 * s, 2)
    th = rng.uniform(0, 2 * np.pi)
    d2 = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (r * r)
    bowl = np.exp(-d2)
    shade = ((xx - c[1]) * np.cos(th) + (yy - c[0]) * np.sin(th)) / r * bowl
    return np.asarray(_surface(rng, s) + rng.uniform(0.2, 0.45) * shade)


def _d_stain(rng: Rng, s: int, big: bool) -> Array:
    cover = rng.uniform(0.25, 0.45) if big else rng.uniform(0.05, 0.12)
    n = power_noise(rng, s, 3.0)
    m = blur((n > np.quantile(n, 1 - cover)).astype(np.float64), 1.5)
    return _apply(_surface(rng, s), m, rng, (0.1, 0.3))


def _d_inclusion(rng: Rng, s: int, big: bool) -> Array:
    k = int(rng.integers(1, 3))
    a = s * (rng.uniform(0.08, 0.2, k) if big else rng.uniform(0.03, 0.07, k))
    axes = np.stack([a, a * rng.uniform(0.15, 0.4, k)], 1)
    m = ellipses(s, rng.uniform(0.2 * s, 0.8 * s, (k, 2)), axes, rng.uniform(0, np.pi, k))
    return _surface(rng, s) - rng.uniform(0.25, 0.5) * m


def _d_patch(rng: Rng, s: int, big: bool) -> Array:
    yy, xx = _grid(s)
    h, w = (s * rng.uniform(0.3, 0.6, 2)) if big else (s * rng.uniform(0.1, 0.22, 2))
    c = rng.uniform(0.2 * s, 0.8 * s, 2)
    th = rng.uniform(0, np.pi)
    u = (xx - c[1]) * np.cos(th) + (yy - c[0]) * np.sin(th)
    v = -(xx - c[1]) * np.sin(th) + (yy - c[0]) * np.cos(th)
    m = ((np.abs(u) < w / 2) & (np.abs(v) < h / 2)).astype(np.float64)
    other = power_noise(rng, s, rng.uniform(0.5, 3.0))
    base = _surface(rng, s)
    return np.asarray(base * (1 - m) + m * (0.5 + (other - 0.5) * 0.5 + rng.uniform(-0.2, 0.2)))


def _d_scale(rng: Rng, s: int, big: bool) -> Array:
    k = int(rng.integers(20, 50) if big else rng.integers(5, 12))
    a = s / 64 * rng.uniform(1.0, 4.0, k)
    axes = np.stack([a, a * rng.uniform(0.3, 0.8, k)], 1)
    th = rng.uniform(0, np.pi) + rng.normal(0, 0.2, k)
    m = ellipses(s, rng.uniform(0, s, (k, 2)), axes, th)
    return _surface(rng, s) - rng.uniform(0.15, 0.4) * m


def _d_fray(rng: Rng, s: int, big: bool) -> Array:
    yy, xx = _grid(s)
    th = rng.uniform(0, 2 * np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    u = (u - u.min()) / (u.max() - u.min()) * s
    rough = (power_noise(rng, s, 1.2) - 0.5) * s * (0.35 if big else 0.08)
    edge = rng.uniform(0.6, 0.85) * s
    m = np.clip(u + rough - edge, 0, 1)
    return np.asarray(_surface(rng, s) * (1 - m) + m * rng.uniform(0.0, 1.0))


def _d_streak(rng: Rng, s: int, big: bool) -> Array:
    yy, xx = _grid(s)
    th = rng.uniform(0, np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    u0 = np.quantile(u, rng.uniform(0.2, 0.8))
    w = s * (rng.uniform(0.08, 0.18) if big else rng.uniform(0.015, 0.04))
    m = np.exp(-0.5 * ((u - u0) / w) ** 2)
    return _apply(_surface(rng, s), m, rng, (0.15, 0.35))


def _d_cluster(rng: Rng, s: int, big: bool) -> Array:
    k = int(rng.integers(8, 25))
    c = rng.uniform(0.25 * s, 0.75 * s, 2)
    spread = s * (rng.uniform(0.1, 0.2) if big else rng.uniform(0.03, 0.06))
    pts = c + rng.normal(0, spread, (k, 2))
    m = discs(s, pts, s / 64 * rng.uniform(0.6, 1.4, k))
    return _apply(_surface(rng, s), m, rng, (0.3, 0.6))


def _d_lighting(rng: Rng, s: int, big: bool) -> Array:
    yy, xx = _grid(s)
    c = rng.uniform(-0.5 * s, 1.5 * s, 2)
    g = np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * (s * rng.uniform(0.3, 0.8)) ** 2))
    return np.asarray(_surface(rng, s) * (0.4 + 0.8 * g))


def _d_blur(rng: Rng, s: int, big: bool) -> Array:
    t = _surface(rng, s) if rng.random() < 0.5 else _d_scratches(rng, s, True)
    return blur(t, rng.uniform(1.5, 3.5) * s / 64)


# ------------------------------------------------------------------ the class table
@dataclass(frozen=True)
class SynthClass:
    name: str
    make: Callable[[Rng, int], Array]
    texture: bool  # textures may be recoloured freely; defect images keep their polarity


def _classes() -> tuple[SynthClass, ...]:
    out: list[SynthClass] = []

    def t(name: str, fn: Callable[[Rng, int], Array]) -> None:
        out.append(SynthClass(name, fn, True))

    for beta in (0.6, 1.2, 1.8, 2.4, 3.0):
        t(f"spectral_b{beta}", partial(_t_spectral, beta=beta))
    for ratio in (2.5, 6.0, 16.0):
        for beta in (1.0, 2.2):
            t(f"oriented_r{ratio}_b{beta}", partial(_t_oriented, ratio=ratio, beta=beta))
    for cyc in (4, 8, 16):
        t(f"bandpass_{cyc}", partial(_t_bandpass, cycles=cyc))
    for cyc in (3, 6, 12):
        for sq in (False, True):
            t(f"grating_{cyc}_{'square' if sq else 'sine'}",
              partial(_t_grating, cycles=cyc, square=sq))
    for cyc in (4, 8, 16):
        t(f"weave_{cyc}", partial(_t_weave, cycles=cyc))
    for n in (2, 4, 8):
        t(f"tiles_{n}", partial(_t_tiles, n=n))
    for n in (8, 32, 96):
        for edges in (False, True):
            t(f"cells_{n}_{'edges' if edges else 'fill'}",
              partial(_t_cells, n=n, edges=edges))
    for dens in (0.08, 0.3):
        for rad in (1.5, 4.0):
            t(f"dots_d{dens}_r{rad}", partial(_t_dots, density=dens, radius=rad))
    for length in (0.12, 0.5):
        for count in (12, 45):
            t(f"fibres_l{length}_n{count}", partial(_t_fibres, length=length, count=count))
    for radial in (False, True):
        t(f"gradient_{'radial' if radial else 'linear'}",
          partial(_t_gradient, radial=radial))
    for cyc in (5, 11):
        t(f"labyrinth_{cyc}", partial(_t_labyrinth, cycles=cyc))
    for p in (0.02, 0.12):
        t(f"speckle_{p}", partial(_t_speckle, p=p))

    defects: list[tuple[str, Callable[..., Array], bool]] = [
        ("clean", _d_clean, False), ("lighting", _d_lighting, False), ("blur", _d_blur, False),
        ("scratch", _d_scratch, True), ("scratches", _d_scratches, True),
        ("crack", _d_crack, True), ("crazing", _d_crazing, True), ("spot", _d_spot, True),
        ("pits", _d_pits, True), ("hole", _d_hole, True), ("dent", _d_dent, True),
        ("stain", _d_stain, True), ("inclusion", _d_inclusion, True),
        ("patch", _d_patch, True), ("scale", _d_scale, True), ("fray", _d_fray, True),
        ("streak", _d_streak, True), ("cluster", _d_cluster, True),
    ]  # fmt: skip
    for name, fn, sized in defects:
        for big in (False, True) if sized else (False,):
            label = f"defect_{name}" + (("_large" if big else "_small") if sized else "")
            out.append(SynthClass(label, partial(fn, big=big), False))
    return tuple(out)


CLASSES = _classes()
NUM_CLASSES = len(CLASSES)


# ------------------------------------------------------------------ finishing
def _finish(rng: Rng, g: Array, texture: bool, s: int) -> Array:
    """Random orientation, contrast, gamma, noise, mild blur; gray or colour. -> HxWx3 uint8."""
    g = np.rot90(g, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        g = g[:, ::-1]
    if texture:
        if rng.random() < 0.5:
            g = 1.0 - g
        g = _norm(g)
        lo = rng.uniform(0.0, 0.4)
        g = lo + g * rng.uniform(0.25, 1.0 - lo)
    else:
        g = (g - 0.5) * rng.uniform(0.7, 1.6) + 0.5 + rng.uniform(-0.2, 0.2)
    g = np.clip(g, 0, 1)
    g = g ** float(np.exp(rng.normal(0, 0.3)))
    if rng.random() < 0.3:
        g = blur(g, rng.uniform(0.3, 0.8))
    g = g + rng.normal(0, rng.uniform(0.0, 0.04), g.shape)
    if rng.random() < 0.6:
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    else:  # two colours, pulled towards gray by a random amount
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        sat = rng.uniform(0.2, 1.0)
        c0, c1 = c0.mean() + sat * (c0 - c0.mean()), c1.mean() + sat * (c1 - c1.mean())
        if np.abs(c1 - c0).sum() < 0.6:
            c1 = 1.0 - c0
        rgb = c0 + g[:, :, None] * (c1 - c0)
        rgb = rgb + rng.normal(0, 0.02, rgb.shape)
    return np.asarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))


def render(seed: int, index: int, size: int = 64) -> tuple[Array, int]:
    """Image ``index`` of the stream ``seed``: (uint8 size x size x 3, class index)."""
    rng = np.random.default_rng([int(seed), int(index)])
    label = int(rng.integers(0, NUM_CLASSES))
    cls = CLASSES[label]
    # Render at a random scale and crop/resize to ``size``: the same class at several scales.
    zoom = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5))))
    s = max(16, round(size * zoom))
    g = np.asarray(cls.make(rng, s), dtype=np.float64)
    if s != size:
        g = _resample(g, size)
    return _finish(rng, g, cls.texture, size), label


def _resample(g: Array, size: int) -> Array:
    """Nearest/bilinear-free resize by index sampling after a blur (anti-aliased enough)."""
    s = g.shape[0]
    if s > size:
        g = blur(g, 0.5 * s / size)
    idx = np.clip(((np.arange(size) + 0.5) * s / size).astype(int), 0, s - 1)
    return g[np.ix_(idx, idx)]


def batch(seed: int, start: int, count: int, size: int = 64) -> tuple[Array, Array]:
    """Images start..start+count-1 as (uint8 N x 3 x H x W, int64 N labels)."""
    xs = np.empty((count, 3, size, size), np.uint8)
    ys = np.empty(count, np.int64)
    for i in range(count):
        img, y = render(seed, start + i, size)
        xs[i] = img.transpose(2, 0, 1)
        ys[i] = y
    return xs, ys
