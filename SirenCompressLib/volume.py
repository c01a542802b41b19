"""`Volume4D`: a 4D image as a numpy array with its geometry and, for diffusion MRI, its gradients."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

# Flips RAS to LPS and back.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")


@dataclass
class Gradients:
    """Diffusion b-values and gradient directions, kept in the convention of the file they came from.

    convention "fsl": `bvecs` are FSL .bvec vectors, in image axes with the x sign flipped when the
    IJK→RAS matrix has a positive determinant.
    convention "nrrd": `bvecs` are unit directions in the NRRD measurement frame; `measurement_frame`
    (columns = frame axes) maps them to RAS world coordinates.
    Directions of b=0 volumes may be zero vectors.
    """

    bvals: np.ndarray  # (V,) s/mm²
    bvecs: np.ndarray  # (V, 3)
    convention: str = "fsl"
    measurement_frame: np.ndarray | None = None  # (3, 3), convention "nrrd" only

    def __post_init__(self) -> None:
        self.bvals = np.asarray(self.bvals, dtype=np.float64).reshape(-1)
        self.bvecs = np.asarray(self.bvecs, dtype=np.float64)
        if self.bvecs.ndim != 2 or self.bvecs.shape != (self.bvals.size, 3):
            raise InputError(
                f"gradient directions must be {self.bvals.size}×3 to match the b-values, "
                f"got {'×'.join(map(str, self.bvecs.shape))}")
        if not (np.isfinite(self.bvals).all() and np.isfinite(self.bvecs).all()):
            raise InputError("b-values or gradient directions contain NaN or Inf")
        if self.convention not in ("fsl", "nrrd"):
            raise InputError(f"unknown gradient convention {self.convention!r}")
        if self.convention == "nrrd":
            frame = np.eye(3) if self.measurement_frame is None else self.measurement_frame
            self.measurement_frame = np.asarray(frame, dtype=np.float64).reshape(3, 3)
        else:
            self.measurement_frame = None

    def directions_ras(self, ijk_to_ras: np.ndarray) -> np.ndarray:
        """Unit gradient directions in RAS world coordinates, (V, 3); zero rows stay zero."""
        if self.convention == "nrrd":
            world = self.bvecs @ self.measurement_frame.T
        else:
            voxel = self.bvecs.copy()
            if np.linalg.det(ijk_to_ras[:3, :3]) > 0:
                voxel[:, 0] *= -1
            world = voxel @ _rotation(ijk_to_ras).T
        return unit_rows(world)

    def directions_voxel(self, ijk_to_ras: np.ndarray) -> np.ndarray:
        """Unit gradient directions along the voxel axes (i, j, k), (V, 3): the frame of a tensor fitted to
        the voxel array; zero rows stay zero."""
        return unit_rows(self.directions_ras(ijk_to_ras) @ np.linalg.inv(_rotation(ijk_to_ras)).T)

    def in_convention(self, convention: str, ijk_to_ras: np.ndarray) -> Gradients:
        """The same gradients expressed in `convention` ("fsl", or "nrrd" with an LPS-identity frame)."""
        if convention == self.convention:
            return self
        if convention == "nrrd":
            return Gradients(self.bvals, self.directions_ras(ijk_to_ras) @ RAS_TO_LPS.T, "nrrd", RAS_TO_LPS)
        voxel = self.directions_voxel(ijk_to_ras)
        if np.linalg.det(ijk_to_ras[:3, :3]) > 0:
            voxel[:, 0] *= -1
        return Gradients(self.bvals, voxel, "fsl")


@dataclass
class FrameIndex:
    """What the volume axis means for a sequence: an index name, its unit and one value per volume
    (as Slicer's sequences keep them, e.g. "time", "s", ["0", "2.5", ...])."""

    name: str = "frame"
    unit: str = ""
    values: list[str] = field(default_factory=list)


@dataclass
class Volume4D:
    """A 4D image: `data` indexed (x, y, z, volume), stored values in the file's own dtype.

    Physical values are `data * scaling[0] + scaling[1]` (NIfTI scl_slope / scl_inter); the codecs work
    on the stored values so that decoding gives back the same dtype and scaling. `ijk_to_ras` is in
    millimetres. `header` holds the file's own header fields that carry meaning (see `headers`), so that
    writing the same format gives them back.
    """

    data: np.ndarray
    ijk_to_ras: np.ndarray = field(default_factory=lambda: np.eye(4))
    gradients: Gradients | None = None
    scaling: tuple[float, float] = (1.0, 0.0)
    frames: FrameIndex | None = None
    header: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)
        validate_data(self.data)
        if self.ijk_to_ras.shape != (4, 4) or not np.isfinite(self.ijk_to_ras).all():
            raise InputError("the IJK→RAS matrix must be a finite 4×4 matrix")
        if abs(np.linalg.det(self.ijk_to_ras[:3, :3])) < 1e-12:
            raise InputError("the IJK→RAS matrix is singular (a voxel axis of zero length or two parallel axes)")
        self.scaling = (float(self.scaling[0]), float(self.scaling[1]))
        if not (np.isfinite(self.scaling).all() and self.scaling[0] != 0):
            raise InputError(f"the value scaling {self.scaling} needs a finite, non-zero slope")
        if self.gradients is not None and self.gradients.bvals.size != self.data.shape[3]:
            raise InputError(
                f"{self.gradients.bvals.size} gradients for {self.data.shape[3]} volumes: "
                "the counts must match")
        if self.frames is not None and len(self.frames.values) != self.data.shape[3]:
            raise InputError(f"{len(self.frames.values)} frame index values for {self.data.shape[3]} volumes")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(x, y, z, volumes)."""
        return tuple(int(n) for n in self.data.shape)


def validate_data(data: np.ndarray) -> None:
    """Check image data before compressing.

    Parameters
    ----------
    data : ndarray
        Expected: 4D (x, y, z, volumes).

    Raises
    ------
    InputError
        Unless `data` is a non-empty, finite 4D numpy array of a supported dtype.
    """
    if not isinstance(data, np.ndarray):
        raise InputError("the image data must be a numpy array")
    if data.ndim != 4:
        raise InputError(
            f"expected a 4D image (x, y, z, volumes), got a {data.ndim}D image of shape "
            f"{'×'.join(map(str, data.shape))}")
    if data.size == 0:
        raise InputError(f"the image is empty (shape {'×'.join(map(str, data.shape))})")
    if data.dtype.name not in SUPPORTED_DTYPES:
        raise InputError(
            f"voxel type {data.dtype.name} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"the image has {bad} NaN or Inf voxels; replace them before compressing")


def _rotation(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Direction cosines of the voxel axes (columns of the 3×3 part, normalised)."""
    m = ijk_to_ras[:3, :3]
    return m / np.linalg.norm(m, axis=0, keepdims=True)


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; zero rows stay zero.

    Parameters
    ----------
    v : ndarray, shape (n, 3)

    Returns
    -------
    ndarray, shape (n, 3)
    """
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 1e-12)
