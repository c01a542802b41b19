"""In-plane rigid motion between the volumes of a slice, for the lossless codec's prediction.

Transforms are 2×3 integer matrices in units of 2^-16 that map voxel indices (x, y) of one image to
positions in another. Composition and resampling are integer arithmetic, so a decoder on any machine
gets the same bits; only the estimation (`register`, encoder side) uses SimpleITK.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

ONE = 1 << 16  # fixed-point unit of the transforms
IDENTITY = np.array([[ONE, 0, 0], [0, ONE, 0]], dtype=np.int64)
WEIGHT_BITS = 8  # bilinear weights in units of 2^-8


def register(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, float]:
    """Rigid in-plane registration of `moving` to `fixed`.

    SimpleITK's `ImageRegistrationMethod`: Mattes mutual information (32 bins, every pixel), linear
    interpolation, regular-step gradient descent (step 1, minimum step 1e-4, 100 iterations) over a 2D Euler
    transform started from the geometric centres, one thread.

    Parameters
    ----------
    fixed, moving : numpy.ndarray
        2D images of the same shape (x, y), indexed [x, y].

    Returns
    -------
    transform : numpy.ndarray
        (2, 3) int64 in units of 2^-16 (`ONE`): maps voxel indices (x, y) of `fixed` to positions in
        `moving`; `IDENTITY` when registration fails (too little structure).
    angle : float
        The rotation angle, radians (0.0 when registration fails).

    Raises
    ------
    InputError
        When SimpleITK is not installed.
    """
    try:
        import SimpleITK as sitk
    except ImportError:
        raise InputError("motion compensation needs SimpleITK: pip install 'sirencompress[motion]'") from None

    f = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32).T)
    m = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32).T)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 100)
    method.SetOptimizerScalesFromPhysicalShift()
    start = sitk.CenteredTransformInitializer(f, m, sitk.Euler2DTransform(),
                                              sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method.SetInitialTransform(start, inPlace=False)
    method.SetNumberOfThreads(1)
    try:
        found = sitk.Euler2DTransform(sitk.CompositeTransform(method.Execute(f, m)).GetBackTransform())
    except RuntimeError:  # too little structure to register: no motion
        return IDENTITY.copy(), 0.0
    matrix = np.array(found.GetMatrix()).reshape(2, 2)
    centre, shift = np.array(found.GetCenter()), np.array(found.GetTranslation())
    affine = np.column_stack([matrix, centre + shift - matrix @ centre])  # p ↦ A p + b
    return to_fixed(affine), float(found.GetAngle())


def to_fixed(affine: np.ndarray) -> np.ndarray:
    """A real affine map in fixed point.

    Parameters
    ----------
    affine : numpy.ndarray
        (2, 3) real matrix [A | b], the map p ↦ A p + b on voxel indices.

    Returns
    -------
    numpy.ndarray
        (2, 3) int64, `affine` × 2^16 rounded to the nearest integer.
    """
    return np.rint(np.asarray(affine, dtype=np.float64) * ONE).astype(np.int64)


def inverse(transform: np.ndarray) -> np.ndarray:
    """The fixed-point inverse (encoder side, in floating point; the decoder reads it from the archive).

    Parameters
    ----------
    transform : numpy.ndarray
        (2, 3) int64 fixed-point transform with an invertible linear part.

    Returns
    -------
    numpy.ndarray
        (2, 3) int64, the inverse map rounded to fixed point.
    """
    a = transform.astype(np.float64) / ONE
    inv = np.linalg.inv(a[:, :2])
    return to_fixed(np.column_stack([inv, -inv @ a[:, 2]]))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner, in integer arithmetic (products rounded half up to 2^-16), the same on every machine.

    Parameters
    ----------
    outer, inner : numpy.ndarray
        (2, 3) int64 fixed-point transforms.

    Returns
    -------
    numpy.ndarray
        (2, 3) int64, the transform p ↦ outer(inner(p)).
    """
    half = ONE // 2
    linear = (outer[:, :2] @ inner[:, :2] + half) >> 16
    shift = ((outer[:, :2] @ inner[:, 2] + half) >> 16) + outer[:, 2]
    return np.column_stack([linear, shift])


def resample(image: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """An image sampled at transform(x, y) for every index (x, y), in integer arithmetic.

    Bilinear interpolation with weights in units of 2^-8 (`WEIGHT_BITS`), rounded half up; positions outside
    the image take the nearest edge value.

    Parameters
    ----------
    image : numpy.ndarray
        2D int64 image (x, y).
    transform : numpy.ndarray
        (2, 3) int64 fixed-point transform from output indices to input positions.

    Returns
    -------
    numpy.ndarray
        int64, the shape of `image`; `image` itself (not a copy) for `IDENTITY`.
    """
    if np.array_equal(transform, IDENTITY):
        return image
    nx, ny = image.shape
    x, y = np.meshgrid(np.arange(nx, dtype=np.int64), np.arange(ny, dtype=np.int64), indexing="ij")
    px = transform[0, 0] * x + transform[0, 1] * y + transform[0, 2]
    py = transform[1, 0] * x + transform[1, 1] * y + transform[1, 2]
    shift = 16 - WEIGHT_BITS
    fx, fy = (px >> shift) & ((1 << WEIGHT_BITS) - 1), (py >> shift) & ((1 << WEIGHT_BITS) - 1)
    x0, y0 = px >> 16, py >> 16
    full = 1 << WEIGHT_BITS

    def at(i, j):
        return image[np.clip(i, 0, nx - 1), np.clip(j, 0, ny - 1)]

    total = (at(x0, y0) * ((full - fx) * (full - fy)) + at(x0 + 1, y0) * (fx * (full - fy))
             + at(x0, y0 + 1) * ((full - fx) * fy) + at(x0 + 1, y0 + 1) * (fx * fy))
    return (total + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)


def simulate(volume, degrees: float = 3.0, voxels: float = 2.0, seed: int = 0):
    """A copy of a volume with simulated in-plane head motion, for tests and benchmarks of motion compensation.

    Each volume after the first is turned about the slice centre and shifted, the same for all its slices
    (scipy `affine_transform`, bilinear, edges repeated; rounded for integer data).

    Parameters
    ----------
    volume : Volume4D
        The data (x, y, z, volumes); its geometry, gradients, scaling and frames are kept.
    degrees : float
        The largest rotation, degrees; each volume's angle is uniform in ±`degrees`.
    voxels : float
        The largest shift along x and along y, voxels; uniform in ±`voxels`.
    seed : int
        Seeds the random angles and shifts.

    Returns
    -------
    Volume4D
        The moved copy, in the dtype of `volume.data`.
    """
    from scipy import ndimage

    from .volume import Volume4D

    rng = np.random.default_rng(seed)
    data = volume.data.astype(np.float64)
    centre = np.array(data.shape[:2]) / 2 - 0.5
    for v in range(1, data.shape[3]):
        angle = np.deg2rad(rng.uniform(-degrees, degrees))
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        offset = centre - turn @ centre + rng.uniform(-voxels, voxels, 2)
        for z in range(data.shape[2]):
            data[:, :, z, v] = ndimage.affine_transform(data[:, :, z, v], turn, offset, order=1, mode="nearest")
    if volume.data.dtype.kind in "iu":
        data = np.rint(data)
    return Volume4D(data.astype(volume.data.dtype), volume.ijk_to_ras, volume.gradients, volume.scaling, volume.frames)

