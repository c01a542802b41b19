"""Wall-clock seconds of `decompress` (numpy only, no file written) of one or more archives, alternated run by run
so that every archive meets the same load; in worker processes as `sirencompress decompress` decodes (--threads:
in threads, as the library does by default); with PYTHONPATH pointing at another checkout, that version's decoder.

    python benchmarks/decode_time.py full.sirz [more.sirz …] [--repeat 3] [--threads]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from SirenCompressLib import decompress, read_archive
from SirenCompressLib.version import __version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archives", type=Path, nargs="+")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each archive")
    parser.add_argument("--threads", action="store_true", help="decode in threads, not worker processes")
    args = parser.parse_args()
    archives = {path: read_archive(path) for path in args.archives}
    for run in range(args.repeat):
        for path, archive in archives.items():
            start = time.perf_counter()
            shape = decompress(archive, processes=not args.threads).data.shape
            print(f"{__version__} run {run + 1} {path.name} {'×'.join(map(str, shape))}: "
                  f"{time.perf_counter() - start:.2f} s", flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB, "
          f"largest worker process {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
