"""`sirencompress`: compress | decompress | info | evaluate | noise | bench | sample.

Exit codes: 0 ok, 2 bad input or usage, 1 internal error, 130 interrupted (no output left behind).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

from . import batch, headers
from .archive import SCENE_KIND, Archive, manifest_kind, read_archive, write_archive
from .atomic import atomic_outputs, check_outputs
from .codecs import (
    DEFAULT,
    REGISTRY,
    add_flags,
    configure,
    get_codec,
    given_settings,
    read_settings_document,
    suggest,
    summary,
)
from .errors import InputError, SirenCompressError, SubjectsFailed
from .evaluate import dmri as dmri_eval
from .evaluate import dmri_report, rd
from .evaluate.rd import CLASSICAL
from .io import diffusion_hint, fsl_gradient_paths, image_format, read_map, read_volume, unstorable, write_volume
from .metrics import Comparison, compare
from .noise import GLOBAL_BLOCKS, estimate_noise
from .phantom import PHANTOMS, named_phantom
from .pipeline import added_noise, compress, decompress, gzip_size, max_error, sizes, stored_comparison
from .progress import Bar, JsonLines
from .rate import config_for_noise, config_for_psnr, config_for_ratio, supports
from .sample import SAMPLES, copy_sample, sample_files
from .scene_archive import mrml_with_files, raw16_bytes, read_scene_archive
from .version import __version__
from .volume import FrameIndex, Volume4D

FORMAT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args) or 0
    except SirenCompressError as exc:
        return _fail(args, str(exc), 2)
    except KeyboardInterrupt:
        return _fail(args, "interrupted; no output was written", 130)
    except BrokenPipeError:  # whoever read our output stopped (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except Exception as exc:  # a bug: one line for users, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        return _fail(args, f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 1)


def _presets() -> dict[str, list[str]]:
    """Preset name → the codecs that have it."""
    found: dict[str, list[str]] = {}
    for name in REGISTRY:
        for preset in get_codec(name).PRESETS:
            found.setdefault(preset, []).append(name)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sirencompress", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = commands.add_parser("compress", help="compress a 4D image to .sirz")
    c.add_argument("input", type=Path, help="4D NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr)")
    c.add_argument("-o", "--output", type=Path, required=True, help="the .sirz file to write")
    c.add_argument("--bval", type=Path, help="FSL b-values (default: same stem as a NIfTI input)")
    c.add_argument("--bvec", type=Path, help="FSL gradient directions (default: same stem, then FSL's bvals/bvecs "
                                             "in the same folder)")
    c.add_argument("--grad", type=Path, help="MRtrix gradient table, rows x y z b in world coordinates (default: "
                                             "same stem .b)")
    c.add_argument("--codec", choices=tuple(REGISTRY),
                   help=f"default: the codec suggested for the input ({DEFAULT} unless a codec suits it better, "
                        "e.g. a long time series without gradients); " + "; ".join(
                            f"{name}: {summary(name).rstrip('.')}"
                            for name in REGISTRY))
    c.add_argument("--preset", choices=sorted(_presets()),
                   help="base settings of a codec that has presets (default: its default preset), which the flags "
                        "below override: " + "; ".join(f"{p} ({', '.join(c)})" for p, c in sorted(_presets().items())))
    c.add_argument("--config-json", metavar="FILE",
                   help='settings as JSON, {"codec": NAME or null, "preset": NAME or null, "config": {FIELD: '
                        'VALUE}} (- reads standard input), instead of the codec flags')
    add_flags(c)
    c.add_argument("--target-ratio", type=float,
                   help="choose the units per layer so that the archive reaches this compression ratio "
                        "(raw 16-bit bytes / archive bytes; met within about 5 %%)")
    c.add_argument("--target-psnr", type=float,
                   help="choose the units per layer (unless --units is given) and the bit depth (integer "
                        "weights, unless --weight-bits is given) by trial networks on one slice, and stop "
                        "training each slice once it reaches this PSNR (dB)")
    c.add_argument("--target-noise", type=float, metavar="F",
                   help="the highest compression ratio whose added error variance D is at most F × the noise "
                        "variance σ² of the data (σ estimated as by `sirencompress noise`; 0.1: an SNR loss of "
                        "4.7 %%): the PSNR at which D = F·σ², aimed at as --target-psnr is (codecs that can aim at "
                        "a PSNR)")
    c.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar",
                   help="bar: for people (stderr); jsonl: one JSON object per line on stdout")
    c.add_argument("--force", action="store_true", help="replace an existing output")
    c.set_defaults(run=_compress)

    d = commands.add_parser("decompress", help="decode a .sirz to NIfTI (+ .bval/.bvec) or NRRD; a scene archive "
                                               "to a folder")
    d.add_argument("input", type=Path)
    d.add_argument("-o", "--output", type=Path, required=True,
                   help=".nii, .nii.gz or .nrrd; for a scene archive a folder (made if missing): every node as "
                        "Slicer reads it (DWI NAME.nrrd, sequence NAME.seq.nrrd, 3D NAME.nii.gz) and the scene's "
                        "MRML file, which references them, and other files")
    d.add_argument("--node", metavar="NAME", help="of a scene archive, only this node (its name or id), to a file")
    d.add_argument("--force", action="store_true", help="replace existing outputs")
    d.set_defaults(run=_decompress)

    i = commands.add_parser("info", help="describe a .sirz: shape, codec, sizes, ratios, per-slice metrics")
    i.add_argument("input", type=Path)
    i.add_argument("--json", action="store_true")
    i.add_argument("--node", metavar="NAME", help="of a scene archive, this node (its name or id) as its own archive")
    i.set_defaults(run=_info)

    e = commands.add_parser("evaluate", help="per-slice and whole MSE, PSNR, SSIM of a decoded image; with --dmri "
                                             "the DTI and RISH errors per tissue against MP-PCA, smoothing, JPEG 2000")
    e.add_argument("original", type=Path, help="the original image (for --dmri with its gradients)")
    e.add_argument("decoded", type=Path, help="a decoded image, or a .sirz (decoded on the fly)")
    e.add_argument("--json", action="store_true")
    dmri = e.add_argument_group("diffusion MRI fidelity (needs pip install 'sirencompress[dmri]')")
    dmri.add_argument("--dmri", action="store_true",
                      help="relative errors of MD, FA, RISH0, RISH2 per tissue and the WM angular error, beside "
                           "MP-PCA denoising, Gaussian smoothing (FWHM 1.5 voxels) and JPEG 2000 at the archive's size")
    dmri.add_argument("--mask", type=Path, metavar="FILE",
                      help="brain mask, 3D NIfTI/NRRD, non-zero inside (default: median_otsu)")
    dmri.add_argument("--labels", type=Path, metavar="FILE",
                      help="tissue labels, 3D NIfTI/NRRD: 1 CSF, 2 GM, 3 WM as FSL FAST's _seg "
                           f"(default: CSF where MD > {dmri_eval.CSF_MIN_MD:g} mm²/s, else WM where FA > "
                           f"{dmri_eval.WM_MIN_FA:g}, else GM; none where MD < {dmri_eval.TISSUE_MIN_MD:g})")
    dmri.add_argument("--shell", type=float, default=1000.0, metavar="B",
                      help="b-value of the DTI shell (default %(default)g)")
    dmri.add_argument("--sh-shell", type=float, metavar="B",
                      help="b-value of the spherical-harmonics shell (default: the highest)")
    dmri.add_argument("--b-tolerance", type=float, default=100.0, metavar="T",
                      help="b-values within this of a shell belong to it (default %(default)g s/mm²)")
    dmri.add_argument("--no-references", action="store_true", help="only the decoded image, no reference rows")
    dmri.add_argument("--report", type=Path, metavar="FOLDER",
                      help="folder for report.md, fidelity.json, PNG figures and NIfTI error maps")
    dmri.add_argument("--force", action="store_true", help="replace an existing report")
    fmri = e.add_argument_group("fMRI fidelity (needs pip install 'sirencompress[fmri]'; --mask and --labels "
                                "as above, --labels: regions for the connectivity, any positive integers)")
    fmri.add_argument("--fmri", action="store_true",
                      help="PSNR/SSIM, GLM z-map differences (with --events) and connectivity differences (with "
                           "--labels)")
    fmri.add_argument("--tr", type=float, help="repetition time in seconds (default: from the image's frame "
                                               "times, else required)")
    fmri.add_argument("--events", type=Path, metavar="TSV", help="BIDS events: onset, duration, trial_type")
    fmri.add_argument("--contrast", help="trial type of the GLM contrast (default: the first in --events)")
    e.set_defaults(run=_evaluate)

    n = commands.add_parser("noise", help="the noise σ of a 4D image (Marchenko–Pastur PCA), its PSNR and what it "
                                          "lets a codec reach")
    n.add_argument("input", type=Path, help="4D NIfTI or NRRD with at least 10 volumes (diffusion, fMRI, ...)")
    n.add_argument("--mask", type=Path, metavar="FILE",
                   help="foreground, 3D NIfTI/NRRD, non-zero inside (default: the Otsu threshold of the mean over "
                        "volumes)")
    n.add_argument("--json", action="store_true")
    n.set_defaults(run=_noise)

    b = commands.add_parser("bench", help="rate-distortion table and plot: our codecs against classical codecs at "
                                          "the same compression ratios, with the noise bound")
    b.add_argument("input", nargs="?", type=Path, help="a 4D image (default: the bundled real sample)")
    _add_phantom_flags(b, "use a synthetic DWI phantom instead; PSNR also against its noise-free version")
    b.add_argument("--ratios", type=float, nargs="+", default=[10.0, 20.0, 40.0, 80.0])
    b.add_argument("--presets", nargs="+", choices=sorted(_presets()), help="presets of the codecs (default: all)")
    b.add_argument("--codecs", nargs="*", choices=[n for n in REGISTRY if "ratio" in get_codec(n).RATE_CONTROL],
                   default=[DEFAULT], help="codecs that can aim at a compression ratio, each run with every preset "
                   "it has (or its defaults); none: classical codecs only (default: %(default)s)")
    b.add_argument("--classical", nargs="+", choices=list(CLASSICAL), default=list(CLASSICAL))
    b.add_argument("--epochs", type=int, help="override the codecs' epochs (for quick runs)")
    b.add_argument("--precision", help="override the codecs' training precision")
    b.add_argument("-o", "--output", type=Path, required=True, help="folder for rd.md, rd.json and rd.png")
    b.add_argument("--force", action="store_true", help="replace existing outputs")
    b.set_defaults(run=_bench)

    t = commands.add_parser("batch", help="compress a cohort listed in a CSV/TSV manifest on a Dask cluster "
                                          "(resumable: verified archives are skipped)")
    t.add_argument("manifest", type=Path, help="CSV/TSV with columns input, output and optional compress options")
    t.add_argument("--results", type=Path, help="results table, .csv or .parquet (default: MANIFEST stem + "
                                                "'-results.csv' beside it)")
    where = t.add_mutually_exclusive_group()
    where.add_argument("--local-workers", type=int, default=1, help="worker processes of a local cluster "
                                                                    "(default 1)")
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--slurm-jobs", type=int, help="start this many SLURM jobs (one worker each) through "
                                                      "dask-jobqueue")
    t.add_argument("--slurm-cores", type=int, default=8)
    t.add_argument("--slurm-memory", default="32GB")
    t.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per SLURM job (--gres=gpu:N)")
    t.add_argument("--slurm-queue", help="SLURM partition")
    t.add_argument("--retries", type=int, default=2, help="tries again when a subject's worker dies or fails")
    t.set_defaults(run=_batch)

    s = commands.add_parser("sample", help="copy the bundled real dMRI sample into a folder, or write a phantom")
    s.add_argument("folder", type=Path)
    s.add_argument("--real", choices=list(SAMPLES),
                   help="which real sample (default: b1k_b2k; multishell_b6k_max: the same subject, 114 volumes "
                        "on 8 shells up to b = 6000)")
    _add_phantom_flags(s, "write a synthetic DWI phantom (NIfTI int16 + .bval/.bvec) instead")
    s.add_argument("--force", action="store_true")
    s.set_defaults(run=_sample)
    return parser


def _add_phantom_flags(parser: argparse.ArgumentParser, help: str) -> None:
    group = parser.add_argument_group("phantom")
    group.add_argument("--phantom", nargs="?", const="small", choices=list(PHANTOMS),
                       help=help + ": small (64×64×4 × 61 volumes, the default) or full (a whole brain on the "
                                   "MNI152 maps, 104×104×72 × 105 volumes of 2 mm; needs nilearn)")
    group.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                       help="the phantom's voxels (the full phantom keeps its 208×208×144 mm field of view)")
    group.add_argument("--snr", type=float, help="b=0 signal / noise σ (default: small 50, full 60)")
    group.add_argument("--seed", type=int, default=0, help="seeds the phantom's noise (and the full one's fibres)")


def _phantom(args: argparse.Namespace) -> tuple[Volume4D, np.ndarray, str] | None:
    """The phantom the flags ask for, or None without --phantom."""
    if args.phantom is None:
        if args.shape or args.snr or args.seed:
            raise InputError("--shape, --snr and --seed apply to a --phantom")
        return None
    return named_phantom(args.phantom, args.shape and tuple(args.shape), args.snr, args.seed)


def _compress(args: argparse.Namespace) -> None:
    if args.output.suffix != ".sirz":
        raise InputError(f"{args.output}: the output must end in .sirz")
    check_outputs([args.output], args.force)
    volume = read_volume(args.input, args.bval, args.bvec, grad=args.grad)
    hint = diffusion_hint(args.input) if volume.gradients is None else None
    if hint:
        print(f"warning: {hint}, but no gradients were read: give --bval/--bvec or --grad to keep them; "
              "compressing without gradients", file=sys.stderr)
    codec, config, given = _codec_config(args, volume, diffusion_like=hint is not None)
    targets = [flag for flag, value in (("--target-ratio", args.target_ratio), ("--target-psnr", args.target_psnr),
                                        ("--target-noise", args.target_noise)) if value is not None]
    if len(targets) > 1:
        raise InputError(f"give one rate target, not {' and '.join(targets)}")
    if args.target_ratio:
        config = config_for_ratio(config, volume, args.target_ratio, codec)
    noise = True  # compress estimates it
    if args.target_psnr is not None or args.target_noise is not None:
        config, noise = _psnr_target(args, volume, codec, config, given)
    source = {"name": args.input.name, "format": image_format(args.input),
              "file_bytes": args.input.stat().st_size, "gzip_bytes": gzip_size(volume.data)}
    progress = {"bar": Bar(), "jsonl": JsonLines(), "none": None}[args.progress]
    archive = compress(volume, codec, config, progress, source, noise)
    n = write_archive(archive, args.output, args.force)
    size, whole, added = sizes(archive, n), stored_comparison(archive).whole, added_noise(archive)
    if args.progress == "jsonl":
        JsonLines()({"event": "done", "output": str(args.output), "bytes": n, "ratio_raw16": size.ratio_raw16,
                     "psnr": whole.psnr, "ssim": whole.ssim, **_noise_fields(added)})
    else:
        print(f"wrote {args.output}: {n:,} bytes in {archive.manifest['encode_seconds']:.0f} s")
        print(_ratios_line(size))
        promise = _promise(archive)
        if promise is not None:
            print(f"{promise}: every slice's SHA-256 is stored and checked when it is decoded")
        if promise is None or max_error(archive):
            print(f"PSNR {_db(whole.psnr)}, SSIM {_num(whole.ssim)} (per slice: sirencompress info {args.output})")
        if added is not None:
            print(_noise_line(added) + (f" (target: at most {args.target_noise:g} σ²)"
                                        if args.target_noise is not None else ""))


def _psnr_target(args: argparse.Namespace, volume, codec: str, config, given: dict):
    """The settings for --target-psnr, or for --target-noise (the PSNR at which the added error is F·σ²),
    and the noise estimate for `compress` (True: it estimates it)."""
    report = lambda p: print("  " + p.describe(config.layers), file=sys.stderr)  # noqa: E731
    units, bits = "units" not in given, "weight_bits" not in given
    noise = True
    if args.target_noise is None:
        supports(codec, "psnr")
        print(f"rate control: {args.target_psnr:g} dB", file=sys.stderr)
        config, probes = config_for_psnr(config, volume, args.target_psnr, codec, units, bits, report)
    else:
        supports(codec, "noise")
        try:
            noise = estimate_noise(volume, most_blocks=GLOBAL_BLOCKS)
        except InputError as exc:
            raise InputError(f"--target-noise needs the noise σ of the data, which cannot be estimated: {exc}") \
                from None
        psnr = noise.bound.psnr_at_fraction(args.target_noise) if args.target_noise > 0 else 0.0
        print(f"rate control: added error at most {args.target_noise:g} σ² (σ {noise.sigma:.4g}): "
              f"{psnr:.2f} dB", file=sys.stderr)
        config, probes, _ = config_for_noise(config, volume, args.target_noise, codec, noise, units, bits, report)
    if probes:
        print(f"rate control: {config.layers}×{config.units}, {config.weight_bits}-bit weights", file=sys.stderr)
    return config, noise


def _promise(archive) -> str | None:
    """What an exact codec's archive promises in words (None for other codecs): bit-exact, exact after the
    quantisation step, or near-lossless within ±E."""
    bound = max_error(archive)
    if bound is None:
        return None
    step = archive.manifest["codec"]["config"].get("quantize")
    if bound:
        return f"near-lossless: every voxel within ±{bound} of the input (checked when written)"
    return "bit-exact" if step is None else f"exact after rounding to multiples of {step:g}"


def _codec_config(args: argparse.Namespace, volume, diffusion_like: bool) -> tuple[str, object, dict]:
    """The codec, its settings and the settings given (flags or --config-json's "config"): from
    --config-json, or from --codec (else the one suggested for the volume), --preset and the codec flags;
    a flag the codec does not have is an error."""
    codec, preset, given = args.codec, args.preset, given_settings(args)
    if args.config_json is not None:
        if given or preset:
            raise InputError("give the settings as flags or in --config-json, not both")
        text = sys.stdin.read() if args.config_json == "-" else _read_text(Path(args.config_json))
        named, preset, given = read_settings_document(text)
        if codec and named and codec != named:
            raise InputError(f"--codec {codec} but --config-json names the {named} codec")
        codec = codec or named
    if codec is None:
        codec = suggest(volume.gradients is not None, volume.shape[3], diffusion_like)
        if codec != DEFAULT:
            print(f"codec: {codec} (suggested for {volume.shape[3]} volumes"
                  f"{'' if volume.gradients is not None else ' without gradients'}; --codec {DEFAULT} to "
                  "override)", file=sys.stderr)
    return codec, configure(codec, given, preset), given


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the settings: {exc.strerror or exc}") from None


def _volume_archive(args: argparse.Namespace) -> tuple[Archive, int]:
    """The single-volume archive a command reads, and its bytes: the input file, or with --node that node of a
    scene archive."""
    if args.node is None:
        return read_archive(args.input), args.input.stat().st_size
    entry = (scene := read_scene_archive(args.input)).node_entry(args.node)
    return scene.archives[entry["id"]], entry["bytes"]


def _decompress(args: argparse.Namespace) -> None:
    if args.node is None and manifest_kind(args.input) == SCENE_KIND:
        return _decompress_scene(args)
    kind = image_format(args.output)
    volume = decompress(_volume_archive(args)[0], processes=True)
    for path in write_volume(volume, args.output, args.force):
        print(f"wrote {path}")
    lost = unstorable(volume.header, volume.frames, kind)
    if lost:
        print(f"note: {FORMAT_NAMES[kind]} cannot hold {'; '.join(lost)}: written without "
              f"(the archive keeps them)", file=sys.stderr)


DECODED_SUFFIXES = {"dwi": ".nrrd", "sequence": ".seq.nrrd", "multivolume": ".nrrd", "volume": ".nii.gz",
                    "labelmap": ".nii.gz"}  # a scene archive's nodes, decoded: as Slicer's storage nodes read them


def _decompress_scene(args: argparse.Namespace) -> None:
    """Every node of a scene archive as a file in the output folder (`DECODED_SUFFIXES`), then the scene's own
    files, its MRML file with storage nodes that read the decoded files."""
    archive = read_scene_archive(args.input)
    folder = args.output
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: a scene archive decodes to a folder, not a file")
    files = archive.scene_files()
    volumes, used, names = [], {name.lower() for name in files}, {}
    for entry in archive.manifest["nodes"]:
        stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in entry["name"]).strip(".") or "node"
        suffix = DECODED_SUFFIXES[entry["kind"]]
        name, n = f"{stem}{suffix}", 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name.lower())
        names[entry["id"]] = name
        volumes.append((folder / name, decompress(archive.archives[entry["id"]], processes=True)))
    files[archive.mrml] = mrml_with_files(archive, {node: f"{'../' * archive.mrml.count('/')}{name}"
                                                    for node, name in names.items()})
    targets = [folder / name for name in files]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    check_outputs(targets + [path for path, _ in volumes], args.force)  # before anything is written
    for path, volume in volumes:
        for written in write_volume(volume, path, args.force):
            print(f"wrote {written}")
    with atomic_outputs(targets, args.force) as temps:
        for temp, data in zip(temps, files.values()):
            temp.write_bytes(data)
    print(f"wrote {folder / archive.mrml} (it opens in 3D Slicer, reading the image files above) and "
          f"{len(files) - 1} more scene files")


def _info(args: argparse.Namespace) -> None:
    if args.node is None and manifest_kind(args.input) == SCENE_KIND:
        return _scene_info(args)
    archive, nbytes = _volume_archive(args)
    m, size = archive.manifest, sizes(archive, nbytes)
    comparison = stored_comparison(archive)
    frames = None if m.get("frames") is None else FrameIndex(**m["frames"])
    constants = [s.get("constant_voxels") for s in m["slices"]]  # fmri: voxels outside the coded mask
    constant_voxels = None if None in constants else sum(constants)
    if args.json:
        out = {k: m[k] for k in ("format_version", "library_version", "codec", "shape", "dtype", "source",
                                 "encode_seconds", "metrics")}
        out["max_error"] = max_error(archive)
        out["gradients"] = None if m["gradients"] is None else {"count": len(m["gradients"]["bvals"]),
                                                                "convention": m["gradients"]["convention"]}
        out["header"], out["frames"] = m.get("header", {}), m.get("frames")
        out["unstorable"] = {kind: unstorable(m.get("header", {}), frames, kind) for kind in FORMAT_NAMES}
        out["sizes"] = {"archive_bytes": size.archive_bytes, "raw16_bytes": size.raw16_bytes,
                        "input_file_bytes": size.input_file_bytes, "gzip_bytes": size.gzip_bytes,
                        "ratio_raw16": size.ratio_raw16, "ratio_input_file": size.ratio_input_file,
                        "ratio_gzip": size.ratio_gzip}
        out["slices"] = [{"slice": s["index"], "kind": s["kind"], "bytes": s["bytes"], **s["metrics"]}
                         for s in m["slices"]]
        out["constant_voxels"] = constant_voxels
        added = added_noise(archive)
        out["noise"] = None if added is None else {k: v for k, v in added.items() if k != "slices"}
        for z, entry in enumerate(out["slices"]):
            entry.update(_noise_fields(added, z))
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return
    config = ", ".join(f"{k}={v}" for k, v in m["codec"]["config"].items())
    g = m["gradients"]
    shells = "none" if g is None else f"{len(g['bvals'])} ({g['convention']}), b = " + ", ".join(
        f"{b:g}" for b in sorted({round(b, -2) for b in g["bvals"]}))
    where = args.input if args.node is None else f"{args.input}, node {args.node!r}"
    print(f"{where}: .sirz format {m['format_version']}, SirenCompress {m['library_version']}")
    print(f"shape {'×'.join(map(str, m['shape']))} {m['dtype']}; gradients: {shells}")
    print(f"codec {m['codec']['name']}: {config}")
    if _promise(archive) is not None:
        print(_promise(archive))
    for line in headers.kept(m.get("header", {})):
        print(f"header: {line}")
    if frames is not None:
        print(f"frames: {frames.name} ({frames.unit or 'no unit'}) {' '.join(frames.values[:4])}"
              + (" …" if len(frames.values) > 4 else ""))
    for kind, name in FORMAT_NAMES.items():
        lost = unstorable(m.get("header", {}), frames, kind)
        if lost:
            print(f"{name} output cannot hold: {'; '.join(lost)}")
    if constant_voxels is not None:
        print(f"voxels decoded as constants (no temporal signal found): {constant_voxels} of "
              f"{m['shape'][0] * m['shape'][1] * m['shape'][2]}")
    print(_ratios_line(size))
    added = added_noise(archive)
    if added is not None:
        print(_noise_line(added) + f"; σ by {added['method']}")
    _print_table(comparison, m["slices"], added)


def _scene_info(args: argparse.Namespace) -> None:
    """A scene archive's nodes: name, kind, codec, bytes and compression ratio (against raw 16-bit)."""
    archive = read_scene_archive(args.input)
    size = args.input.stat().st_size
    rows = [{**{k: e[k] for k in ("name", "kind", "codec", "bytes")}, "shape": archive.archives[e["id"]].manifest[
        "shape"], "ratio_raw16": 2 * math.prod(archive.archives[e["id"]].manifest["shape"]) / e["bytes"]}
        for e in archive.manifest["nodes"]]
    scene_bytes = sum(len(data) for data in archive.scene_files().values())
    if args.json:
        print(json.dumps({"kind": SCENE_KIND, "format_version": archive.manifest["format_version"],
                          "library_version": archive.manifest["library_version"], "archive_bytes": size,
                          "raw16_bytes": raw16_bytes(archive), "scene_files": len(archive.scene_files()),
                          "scene_bytes": scene_bytes, "nodes": rows}, indent=1, ensure_ascii=False))
        return
    print(f"{args.input}: .sirz scene archive, format {archive.manifest['format_version']}, SirenCompress "
          f"{archive.manifest['library_version']}; {len(rows)} compressed nodes, {len(archive.scene_files())} scene "
          f"files ({scene_bytes:,} bytes uncompressed, MRML {archive.mrml})")
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'kind':<11}  {'codec':<9}  {'shape':<16}  {'bytes':>10}  {'ratio':>6}")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<11}  {r['codec']:<9}  {'×'.join(map(str, r['shape'])):<16}  "
              f"{r['bytes']:>10,}  {r['ratio_raw16']:>6.2f}")
    print(f"whole archive: {size:,} bytes; CR {raw16_bytes(archive) / size:.2f} against the nodes as raw 16-bit")


def _evaluate(args: argparse.Namespace) -> None:
    if args.dmri and args.fmri:
        raise InputError("give --dmri or --fmri, not both")
    if args.dmri:
        return _evaluate_dmri(args)
    if args.fmri:
        return _evaluate_fmri(args)
    fmri_only = [flag for flag, value in (("--tr", args.tr), ("--events", args.events), ("--contrast", args.contrast))
                 if value is not None]
    if fmri_only:
        raise InputError(f"{', '.join(fmri_only)}: only with --fmri")
    given = [flag for flag, value in (("--mask", args.mask), ("--labels", args.labels), ("--sh-shell", args.sh_shell),
                                      ("--no-references", args.no_references), ("--report", args.report))
             if value]
    if given:
        raise InputError(f"{', '.join(given)}: only with --dmri or --fmri")
    original = read_volume(args.original, gradients=False)
    if args.decoded.suffix == ".sirz":
        decoded = decompress(read_archive(args.decoded))
    else:
        decoded = read_volume(args.decoded, gradients=False)
    comparison = compare(original.data, decoded.data)
    if args.json:
        print(json.dumps({"slices": [{"slice": z, **m.to_json()} for z, m in enumerate(comparison.slices)],
                          "whole": comparison.whole.to_json()}, indent=1))
        return
    _print_table(comparison)


def _evaluate_dmri(args: argparse.Namespace) -> None:
    if args.report is not None and args.report.is_dir():  # fail before the minutes of fitting
        check_outputs([args.report / name for name in (dmri_report.REPORT, dmri_report.JSON)], args.force)
    original = read_volume(args.original)
    archive_bytes = None
    if args.decoded.suffix == ".sirz":
        archive = read_archive(args.decoded)
        decoded, archive_bytes = decompress(archive), args.decoded.stat().st_size
        name = archive.manifest["codec"]["name"]
    else:
        decoded, name = read_volume(args.decoded, gradients=False), "decoded"
    result = dmri_eval.dmri_fidelity(
        original, decoded, mask=None if args.mask is None else read_map(args.mask),
        labels=None if args.labels is None else read_map(args.labels), shell=args.shell, tolerance=args.b_tolerance,
        sh_shell=args.sh_shell, references=not args.no_references, archive_bytes=archive_bytes, name=name)
    print(json.dumps(result.to_json(), indent=1, ensure_ascii=False) if args.json else dmri_report.markdown(result))
    if args.report is not None:
        paths = dmri_report.write_fidelity_report(result, args.report, args.force)
        print(f"wrote {len(paths)} files to {args.report}", file=sys.stderr if args.json else sys.stdout)


def _evaluate_fmri(args: argparse.Namespace) -> None:
    from .evaluate import fmri as fmri_eval

    original = read_volume(args.original, gradients=False)
    decoded = (decompress(read_archive(args.decoded)) if args.decoded.suffix == ".sirz"
               else read_volume(args.decoded, gradients=False))
    tr = args.tr or _frame_interval(original)
    result = fmri_eval.fmri_fidelity(
        original, decoded, tr, events=None if args.events is None else fmri_eval.read_events(args.events),
        labels=None if args.labels is None else read_map(args.labels),
        mask=None if args.mask is None else read_map(args.mask), contrast=args.contrast)
    print(json.dumps(result.to_json(), indent=1) if args.json else result.markdown())


def _frame_interval(volume) -> float:
    """The repetition time from the frame times of a time series, or `InputError` asking for --tr."""
    frames = volume.frames
    seconds = {"s": 1.0, "ms": 1e-3, "us": 1e-6}.get(frames.unit) if frames is not None else None
    try:
        times = [float(v) * seconds for v in frames.values] if seconds and frames.name == "time" else []
    except ValueError:
        times = []
    if len(times) < 2 or not times[1] > times[0]:
        raise InputError("the image does not say its repetition time: give --tr SECONDS")
    return times[1] - times[0]


def _noise(args: argparse.Namespace) -> None:
    volume = read_volume(args.input, gradients=False)
    noise = estimate_noise(volume, None if args.mask is None else read_map(args.mask))
    if args.json:
        print(json.dumps(noise.to_json(), indent=1, ensure_ascii=False))
        return
    known = [s for s in noise.slice_sigmas if s is not None]
    bound = noise.bound
    print(f"noise σ {noise.sigma:.4g} ({noise.percent_of_range:.3g} % of the range {noise.data_range:.6g}); "
          f"noise PSNR {noise.noise_psnr:.2f} dB")
    print(f"per slice: σ {min(known):.4g} to {max(known):.4g} over {len(known)} of {len(noise.slice_sigmas)} slices")
    print("no codec passes (Shannon bound of this noise, 16-bit): "
          + ", ".join(f"{bound.psnr(r):.1f} dB at CR {r}" for r in (10, 20, 40, 80)))
    print(f"method: {noise.method}")
    print(f"voxels: {noise.voxels:,} in {noise.blocks} blocks; foreground: {noise.mask}")


def _bench(args: argparse.Namespace) -> None:
    if args.phantom and args.input:
        raise InputError("give an input image or --phantom, not both")
    args.output.mkdir(parents=True, exist_ok=True)
    outputs = [args.output / name for name in ("rd.md", "rd.json", "rd.png")]
    check_outputs(outputs, args.force)
    clean = None
    phantom = _phantom(args)
    if phantom:
        volume, clean, data_name = phantom
    else:
        files = [args.input] if args.input else sample_files()
        path = files[0]
        volume = read_volume(*files)
        data_name = f"{path.name}, {'×'.join(map(str, volume.shape))}"
    volume, rounded = rd.integer_volume(volume)
    if rounded:
        data_name += ", rounded to int16 before every codec"
    overrides = {k: v for k, v in (("epochs", args.epochs), ("precision", args.precision)) if v is not None}
    codecs = {" ".join(filter(None, (codec, preset))): (codec, configure(codec, overrides, preset))
              for codec in args.codecs for preset in args.presets or sorted(get_codec(codec).PRESETS) or [None]}
    print(f"data: {data_name}", flush=True)
    try:
        noise = estimate_noise(volume, most_blocks=GLOBAL_BLOCKS)
        bound = noise.bound
        print(f"noise σ {noise.sigma:.4g}, noise PSNR {noise.noise_psnr:.2f} dB ({noise.method})", flush=True)
    except InputError as exc:  # the codecs can still be compared
        noise = bound = None
        print(f"{exc}; no noise bound", flush=True)
    rows = rd.run(volume, args.ratios, codecs, args.classical, clean, log=lambda line: print(line, flush=True))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch device {_device_name()}"
    head = f"Data: {data_name}. Machine: {machine}. Our codecs' settings: those that differ from their defaults."
    with atomic_outputs(outputs, args.force) as (md, js, png):
        md.write_text(f"{head}\n\n" + rd.markdown(rows, clean is not None, bound))
        rd.to_json(rows, str(js), bound, data=data_name, machine=machine, ratios=args.ratios,
                   noise=None if noise is None else noise.to_json())
        rd.plot(rows, str(png), data_name, bound)
    print(rd.markdown(rows, clean is not None, bound))
    print("wrote " + ", ".join(map(str, outputs)))


def _batch(args: argparse.Namespace) -> None:
    subjects = batch.read_manifest(args.manifest)
    results = args.results or args.manifest.with_name(args.manifest.stem + "-results.csv")
    try:
        import dask
    except ImportError:
        raise InputError("batch needs Dask: pip install 'sirencompress[cluster]'") from None
    dask.config.set({"distributed.scheduler.allowed-failures": args.retries})
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    elif args.slurm_jobs:
        from distributed import Client

        cluster = batch.slurm_cluster(args.slurm_cores, args.slurm_memory, args.slurm_gpus, args.slurm_queue)
        cluster.scale(jobs=args.slurm_jobs)
        client = Client(cluster)
    else:
        client = batch.local_client(args.local_workers)
    outcomes: list[batch.Outcome] = []

    def report(outcome: batch.Outcome, finished: int, total: int) -> None:
        outcomes.append(outcome)
        batch.write_results(outcomes, results)
        filled = finished * 20 // total
        detail = outcome.error if outcome.status == "failed" else \
            f"CR {outcome.ratio:.1f}, PSNR {_db(math.inf if outcome.psnr is None else outcome.psnr)}" + \
            (f", {outcome.seconds:.0f} s on {outcome.worker}" if outcome.seconds is not None else "")
        print(f"[{'#' * filled}{'.' * (20 - filled)}] {finished}/{total} {outcome.status}: {outcome.input}: {detail}",
              flush=True)

    with client:
        print(f"{len(subjects)} subjects; Dask dashboard: {client.dashboard_link}", flush=True)
        batch.run(subjects, client, args.retries, report)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
    print(f"{counts['done']} done, {counts['skipped']} skipped (done before), {counts['failed']} failed; "
          f"results: {results}")
    if counts["failed"]:
        raise SubjectsFailed(f"{counts['failed']} of {len(subjects)} subjects failed (see {results})")


def _device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sample(args: argparse.Namespace) -> None:
    if args.phantom and args.real:
        raise InputError("give --real or --phantom, not both")
    path = args.folder / f"phantom_{args.phantom}.nii.gz"
    if args.phantom:
        args.folder.mkdir(parents=True, exist_ok=True)
        check_outputs([path, *fsl_gradient_paths(path)], args.force)
    phantom = _phantom(args)
    if phantom is None:
        print(copy_sample(args.folder, args.force, args.real or "b1k_b2k"))
        return
    print(write_volume(phantom[0], path, args.force)[0])


def _print_table(comparison: Comparison, entries: list[dict] | None = None, added: dict | None = None) -> None:
    """Per-slice rows and a last row for the whole image; kind and bytes columns from the manifest's slice
    `entries` when given, D/σ² and SNR loss columns with an `added_noise` dict."""
    def noise_cells(z: int | None) -> list[str]:
        if added is None:
            return []
        part = added if z is None else added["slices"][z]
        return [f"{part['noise_fraction']:.3g}", f"{part['snr_loss']:.2f}"]

    nbytes = _byte_cells(entries) if entries else []
    rows = [[str(z)] + ([entries[z]["kind"], nbytes[z]] if entries else []) + _cells(m) + noise_cells(z)
            for z, m in enumerate(comparison.slices)]
    total = ["", str(sum(e["bytes"] for e in entries))] if entries else []
    rows.append(["all"] + total + _cells(comparison.whole) + noise_cells(None))
    head = ["slice"] + (["kind", "bytes"] if entries else []) + ["MSE", "PSNR dB", "SSIM"] \
        + (["D/σ²", "SNR loss %"] if added else [])
    for row in [head] + rows:
        print(" ".join(cell.rjust(9) for cell in row))


def _byte_cells(entries: list[dict]) -> list[str]:
    """Each slice's bytes, or "in Z" for a slice decoded from slice Z's member (one shared by a slab or the
    volume)."""
    owners: dict = {}
    cells = []
    for entry in entries:
        owner = owners.setdefault(entry["member"], entry["index"]) if entry.get("member") else entry["index"]
        cells.append(f"in {owner}" if owner != entry["index"] else str(entry["bytes"]))
    return cells


def _noise_fields(added: dict | None, z: int | None = None) -> dict:
    """The JSON keys of the error in noise units: noise_sigma (whole image only), noise_fraction, snr_loss; of
    slice `z` when given; null without a recorded σ."""
    part = {} if added is None else added if z is None else added["slices"][z]
    fields = {key: part.get(key) for key in ("noise_fraction", "snr_loss")}
    return fields if z is not None else {"noise_sigma": part.get("sigma"), **fields}


def _noise_line(added: dict) -> str:
    return (f"added error {added['noise_fraction']:.3g} σ² of the noise σ {added['sigma']:.4g} at encode: "
            f"SNR loss {added['snr_loss']:.2f} %")


def _cells(m) -> list[str]:
    return [f"{m.mse:.3g}", _db(m.psnr, unit=False), _num(m.ssim)]


def _ratios_line(size) -> str:
    parts = [f"compression ratio {size.ratio_raw16:.2f} against raw 16-bit ({size.raw16_bytes:,} bytes)"]
    if size.ratio_input_file:
        parts.append(f"{size.ratio_input_file:.2f} against the input file ({size.input_file_bytes:,})")
    if size.ratio_gzip:
        parts.append(f"{size.ratio_gzip:.2f} against gzip of the voxels ({size.gzip_bytes:,})")
    return "; ".join(parts)


def _db(psnr: float, unit: bool = True) -> str:
    text = "inf" if math.isinf(psnr) else f"{psnr:.2f}"
    return f"{text} dB" if unit else text


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "progress", None) == "jsonl":
        JsonLines()({"event": "error", "message": message, "exit_code": code})
    print(f"sirencompress: error: {message}", file=sys.stderr)
    return code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
