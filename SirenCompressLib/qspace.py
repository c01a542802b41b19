"""q-space geometry for prediction across diffusion volumes: shells, a furthest-first coding order and
PDE inpainting on the sphere of gradient directions (Laplace–Beltrami or biharmonic, by finite elements
with cotangent weights on the convex hull of the directions and their antipodes).

Encoder-side only (uses scipy); the resulting weights are stored in the archive as fixed-point numbers.
"""

from __future__ import annotations

import numpy as np

B0_MAX = 50.0  # s/mm²: volumes at or below this b-value are non-weighted


def shells(bvals: np.ndarray, tolerance: float = 0.1) -> np.ndarray:
    """Shell label per volume: 0 for b ≤ B0_MAX, then 1, 2, … by increasing b.

    Parameters
    ----------
    bvals : ndarray, shape (V,)
        b-values in s/mm².
    tolerance : float
        Values within `tolerance`·b of a shell's first b-value join it.

    Returns
    -------
    ndarray of int, shape (V,)
    """
    bvals = np.asarray(bvals, dtype=float)
    labels = np.zeros(bvals.size, dtype=int)
    centres: list[float] = []
    for i in np.argsort(bvals, kind="stable"):
        if bvals[i] <= B0_MAX:
            continue
        if not centres or bvals[i] > centres[-1] * (1 + tolerance):
            centres.append(bvals[i])
        labels[i] = len(centres)
    return labels


def furthest_first(directions: np.ndarray) -> list[int]:
    """Order of unit directions: the first, then each time the one whose smallest angle to the chosen ones
    (antipodes count as the same direction) is largest.

    Parameters
    ----------
    directions : ndarray, shape (n, 3)

    Returns
    -------
    list of int
    """
    n = len(directions)
    if n == 0:
        return []
    chosen = [0]
    closeness = np.abs(directions @ directions[0])
    closeness[0] = np.inf
    while len(chosen) < n:
        nxt = int(np.argmin(closeness))
        chosen.append(nxt)
        closeness = np.maximum(closeness, np.abs(directions @ directions[nxt]))
        closeness[chosen] = np.inf
    return chosen


def coding_order(bvals: np.ndarray | None, bvecs: np.ndarray | None, volumes: int) -> list[int]:
    """Volumes in coding order: non-weighted volumes first (file order), then each shell by increasing b in
    furthest-first order. Without gradients: file order.

    Parameters
    ----------
    bvals : ndarray, shape (V,), or None
    bvecs : ndarray, shape (V, 3), or None
    volumes : int

    Returns
    -------
    list of int
    """
    if bvals is None or bvecs is None:
        return list(range(volumes))
    labels = shells(bvals)
    order = [int(i) for i in np.flatnonzero(labels == 0)]
    for shell in range(1, labels.max() + 1):
        members = np.flatnonzero(labels == shell)
        order += [int(members[i]) for i in furthest_first(_unit(bvecs[members]))]
    return order


def inpainting_weights(directions: np.ndarray, known: list[int], target: int,
                       kind: str = "laplace") -> np.ndarray | None:
    """Weights over the known directions whose sum with the known values predicts the value at `target`.

    The steady state of Laplace–Beltrami (`laplace`) or biharmonic (`biharmonic`) diffusion on the sphere
    with the known values fixed (PDE inpainting in q-space, after the lossless dMRI paper).

    Parameters
    ----------
    directions : ndarray, shape (n, 3)
        Unit vectors of one shell.
    known : list of int
        Indices into `directions` whose values are known.
    target : int
        The index to predict.
    kind : str
        "laplace" or "biharmonic".

    Returns
    -------
    ndarray, shape (len(known),), or None
        None when the directions do not span a sphere (fewer than 3 known, or a degenerate hull).
    """
    from scipy.spatial import ConvexHull, QhullError

    directions = _unit(directions)
    same = np.flatnonzero(np.abs(directions[known] @ directions[target]) > 1 - 1e-9)
    if same.size:
        weights = np.zeros(len(known))
        weights[same[0]] = 1.0
        return weights
    if len(known) < 3:
        return None
    n = len(directions)
    points = np.concatenate([directions, -directions])
    try:
        faces = ConvexHull(points).simplices
    except (QhullError, ValueError):
        return None
    if np.unique(faces).size != 2 * n:  # duplicate directions leave vertices off the hull
        return None
    stiffness, mass = _fem(points, faces)
    operator = stiffness if kind == "laplace" else stiffness @ (stiffness / mass[:, None])
    fixed = np.concatenate([known, np.asarray(known) + n])
    free = np.setdiff1d(np.arange(2 * n), fixed)
    solution = -np.linalg.solve(operator[np.ix_(free, free)], operator[np.ix_(free, fixed)])
    row = solution[np.searchsorted(free, target)]
    return row[:len(known)] + row[len(known):]


def _fem(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cotangent stiffness matrix and lumped mass (one third of the adjacent triangle areas per vertex)."""
    n = len(points)
    stiffness, mass = np.zeros((n, n)), np.zeros(n)
    for corner in range(3):
        i, j, k = faces[:, corner], faces[:, (corner + 1) % 3], faces[:, (corner + 2) % 3]
        u, v = points[j] - points[i], points[k] - points[i]
        cross = np.linalg.norm(np.cross(u, v), axis=1)
        cot = np.einsum("ij,ij->i", u, v) / cross  # the angle at i faces edge (j, k)
        np.add.at(stiffness, (j, k), -cot / 2)
        np.add.at(stiffness, (k, j), -cot / 2)
        np.add.at(mass, i, cross / 6)
    stiffness[np.diag_indices(n)] = -stiffness.sum(axis=1)
    return stiffness, mass


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)
