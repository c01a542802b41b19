"""Cohort throughput: subjects per hour of `sirencompress batch` on a local Dask cluster, 1 and 2 workers.

Writes N phantom subjects (the test phantom: 16×14×3 × 15 volumes) and a manifest with the given settings,
then runs the batch once per worker count, from scratch each time, and prints subjects per hour.

    python benchmarks/batch_throughput.py [--subjects 8] [--workers 1 2] [--epochs 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from SirenCompressLib import write_volume
from SirenCompressLib.phantom import dwi_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sirencompress-cohort-"))
    try:
        lines = ["input,output,units,epochs,qat_epochs,device"]
        for i in range(args.subjects):
            write_volume(dwi_phantom((16, 14, 3), 7, (1000.0, 2000.0), noise=0.02, seed=i), folder / f"s{i}.nii.gz")
            lines.append(f"s{i}.nii.gz,out/s{i}.sirz,64,{args.epochs},20,cpu")
        (folder / "cohort.csv").write_text("\n".join(lines) + "\n")
        print(f"{platform.machine()}, {os.cpu_count()} cores; {args.subjects} subjects, 3×64 compact, "
              f"{args.epochs}+20 epochs\n\n| workers | seconds | subjects per hour |\n|---|---|---|")
        for workers in args.workers:
            shutil.rmtree(folder / "out", ignore_errors=True)
            (folder / "out").mkdir()
            start = time.monotonic()
            subprocess.run([sys.executable, "-m", "SirenCompressLib", "batch", str(folder / "cohort.csv"),
                            "--local-workers", str(workers)], check=True, capture_output=True)
            seconds = time.monotonic() - start
            print(f"| {workers} | {seconds:.1f} | {args.subjects / seconds * 3600:.0f} |")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
