"""Per-slice against slab-shared KLT bases for the transform codec (issue 16, item 1): bytes and PSNR of both at
the same steps, the basis charged once a slab, and the difference at equal size from the local slope of PSNR
against log2(bytes) (steps × 0.95 and × 1.05). A measurement only: the format stores a basis per slice.

    python benchmarks/slab_basis.py NAME PATH Z0 NZ SLABS STEP [STEP …]   (SLABS comma-separated, e.g. 2,4,8,16;
    NOPROBE=1 skips the slope probes)
Writes NAME.json in the working folder and prints a table.
"""
import argparse
import json
import math
import os
import time
from dataclasses import replace

import numpy as np

from SirenCompressLib import read_volume
from SirenCompressLib.codecs import transform as T
from SirenCompressLib.pipeline import decoded_psnr


def shared_klt(images):
    """KLT of the pooled voxels of a slab, each slice centred by its own mean (within-slice covariance)."""
    centred = []
    for im in images:
        x = im.reshape(-1, im.shape[2]).astype(np.float64)
        centred.append(x - x.mean(axis=0))
    c = np.concatenate(centred)
    ev, vec = np.linalg.eigh(c.T @ c / c.shape[0])
    order = np.argsort(ev)[::-1]
    return vec[:, order].T, np.sqrt(np.maximum(ev[order], 0))


def basis_share(q):
    """Bytes the basis takes in the slice's side stream: side stream with minus without the basis rows."""
    return len(T._side_stream(q)) - len(T._side_stream(replace(q, basis=q.basis[:0])))


def measure(data, images, step, cfg, slab):
    """slab 0: per-slice KLT (the codec as is); slab S: the KLT shared by S consecutive slices."""
    if slab == 0:
        transforms = [T.klt(im) for im in images]
    else:
        transforms = []
        for s0 in range(0, len(images), slab):
            vectors, devs = shared_klt(images[s0:s0 + slab])
            for im in images[s0:s0 + slab]:
                transforms.append(T.Klt(im.reshape(-1, im.shape[2]).mean(axis=0), vectors, devs))
    qs = [T.quantise(im, step, cfg, t) for im, t in zip(images, transforms)]
    net = T.train_model(qs, cfg)
    sizes = [len(T.write_slice(q, net)) for q in qs]
    shares = [basis_share(q) for q in qs]
    ks = [int(q.symbols.shape[0]) for q in qs]
    shape = data.shape
    psnr = decoded_psnr(data, [T.reconstruct(q, step, shape) for q in qs])
    netb = len(net.to_bytes())
    if slab == 0:
        total = sum(sizes)
    else:  # each slab stores the basis once: in the side stream of its slice with the most components
        total = 0
        for s0 in range(0, len(images), slab):
            idx = range(s0, min(s0 + slab, len(images)))
            keep = max(idx, key=lambda i: ks[i])
            total += sum(sizes[i] - (shares[i] if i != keep else 0) for i in idx)
    return dict(slab=slab, step=step, bytes=total + netb, slice_bytes=sum(sizes), net_bytes=netb,
                basis_bytes=sum(shares), side_bytes=sum(len(T._side_stream(q)) for q in qs), psnr=psnr,
                components=ks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the name of the JSON file written")
    parser.add_argument("path", help="the 4D volume")
    parser.add_argument("z0", type=int, help="first slice")
    parser.add_argument("nz", type=int, help="slices")
    parser.add_argument("slabs", help="slab sizes, comma-separated")
    parser.add_argument("steps", type=float, nargs="+", help="quantiser steps Δ")
    args = parser.parse_args()
    name, path, z0, nz, steps = args.name, args.path, args.z0, args.nz, args.steps
    slabs = [int(s) for s in args.slabs.split(",")]
    vol = read_volume(path)
    data = vol.data[:, :, z0:z0 + nz]
    print(name, vol.data.shape, vol.data.dtype, "slices", z0, "to", z0 + nz - 1, flush=True)
    images = [data[:, :, z].astype(np.float64) for z in range(nz)]
    cfg = T.Config()
    rows = []
    raw = data.size * 2
    for step in steps:
        for slab in [0] + slabs:
            t = time.time()
            r = measure(data, images, step, cfg, slab)
            r["cr"] = raw / r["bytes"]
            rows.append(r)
            print(f"step {step:.4f} slab {slab or 'per-slice':>9}: bytes {r['bytes']} (CR {r['cr']:.2f}) "
                  f"PSNR {r['psnr']:.4f} basis {r['basis_bytes']} side {r['side_bytes']} slices {r['slice_bytes']} "
                  f"net {r['net_bytes']} K {r['components']}  {time.time() - t:.0f}s", flush=True)
        # local slope of the per-slice curve: steps x 0.95 and x 1.05
        for f in (() if os.environ.get("NOPROBE") else (0.95, 1.05)):
            r = measure(data, images, step * f, cfg, 0)
            r["cr"] = raw / r["bytes"]
            r["slope_probe_of"] = step
            rows.append(r)
        json.dump(rows, open(f"{name}.json", "w"), indent=1)
    if not os.environ.get("NOPROBE"):
        report(rows, slabs)


def report(rows, slabs):
    for step in sorted({r["step"] for r in rows if "slope_probe_of" not in r}):
        base = next(r for r in rows if r["step"] == step and r["slab"] == 0 and "slope_probe_of" not in r)
        probes = sorted([r for r in rows if r.get("slope_probe_of") == step], key=lambda r: r["step"])
        low, high = probes
        slope = (low["psnr"] - high["psnr"]) / (math.log2(low["bytes"]) - math.log2(high["bytes"]))
        print(f"step {step:.4f}: per-slice {base['bytes']} B, {base['psnr']:.4f} dB, CR {base['cr']:.2f}; "
              f"basis {base['basis_bytes']} B = {100 * base['basis_bytes'] / base['slice_bytes']:.2f}% of slice bytes; "
              f"slope {slope:.3f} dB/octave")
        for slab in slabs:
            r = next(x for x in rows if x["step"] == step and x["slab"] == slab and "slope_probe_of" not in x)
            db = r["psnr"] - base["psnr"] + slope * (math.log2(base["bytes"]) - math.log2(r["bytes"]))
            print(f"   slab {slab:2d}: {r['bytes']} B ({100 * (r['bytes'] / base['bytes'] - 1):+.3f}%), "
                  f"{r['psnr']:.4f} dB ({r['psnr'] - base['psnr']:+.4f}), at equal size {db:+.4f} dB")


if __name__ == "__main__":
    main()
