"""Writes Testing/data/<codec>-0.3.sirz and -decoded.npy with the 0.3 code: `git worktree add /tmp/v03 00162af`,
then `PYTHONPATH=/tmp/v03 python make_0.3_fixtures.py` in a scratch folder (fmri-0.3 was written earlier)."""

import numpy as np

from SirenCompressLib import __version__
from SirenCompressLib.archive import read_archive, write_archive
from SirenCompressLib.codecs import get_codec
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import compress, decompress

print(__version__)
v = dwi_phantom(shape=(8, 8, 2), directions=6, bvalues=(1000.0,), noise=0.02)
print(v.data.shape, v.data.dtype)
for name, kw in (("siren", dict(layers=1, units=8, epochs=20)), ("siren3d", dict(layers=1, units=8, epochs=20)),
                 ("lossless", {})):
    mod = get_codec(name)
    cfg = mod.Config(**kw) if kw else mod.default_config()
    if name != "lossless":
        cfg = mod.Config(**{**mod.default_config().to_json(), **kw, "qat_epochs": 5, "device": "cpu"})
    a = compress(v, name, cfg)
    n = write_archive(a, f"{name}-0.3.sirz", True)
    d = decompress(read_archive(f"{name}-0.3.sirz")).data
    np.save(f"{name}-0.3-decoded.npy", d)
    print(name, n, d.dtype)
