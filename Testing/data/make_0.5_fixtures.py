"""Writes Testing/data/transform-0.5.sirz and -decoded.npy with the 0.5 code: `git worktree add /tmp/v05 2fc085c`,
then `PYTHONPATH=/tmp/v05 python make_0.5_fixtures.py` in a scratch folder. Float data (no rounding hides a change
of the decoded values) whose noise is Laplacian and the step large, so that the coefficients bunch at the low
edge of their bins: negative reconstruction offsets among the slices' (checked)."""

import numpy as np

from SirenCompressLib import Volume4D, __version__, context_model
from SirenCompressLib.archive import read_archive, write_archive
from SirenCompressLib.codecs import transform
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import compress, decompress

print(__version__)
v = dwi_phantom(shape=(12, 10, 3), directions=14, bvalues=(1000.0,), noise=0.0, seed=5)
noise = np.random.default_rng(5).laplace(scale=20.0, size=v.data.shape)
v = Volume4D((v.data + noise).astype(np.float32), v.ijk_to_ras, v.gradients)
a = compress(v, "transform", transform.Config(step=80.0))
offsets = []
for entry in a.manifest["slices"]:
    member = a.members[entry["member"]]
    side = transform._parts(member[context_model.Network.from_bytes(member)[1]:], 3)[0]
    offsets += list(transform._read_side(side, v.shape[3], entry["components"])[3])
assert min(offsets) < 0, offsets
n = write_archive(a, "transform-0.5.sirz", True)
d = decompress(read_archive("transform-0.5.sirz")).data
np.save("transform-0.5-decoded.npy", d)
print(n, d.dtype, offsets)
