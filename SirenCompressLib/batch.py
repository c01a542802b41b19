"""Compress a cohort on a Dask cluster: one task per subject, resumable, failures recorded, never fatal.

A manifest (CSV or TSV) lists subjects: columns `input` and `output`, and optionally any `compress`
option as a column named like the flag without dashes (`preset`, `units`, `epochs`, `target_ratio`,
`codec`, ...; an empty cell leaves the default; a switch such as `motion` takes true/false; the codec,
preset and codec settings reach the child as JSON, the other options as flags). Relative
paths are relative to the manifest's folder.

Each task runs `sirencompress compress` in a child process on its worker (so a crash or a runaway
subject cannot take the worker with it, and a worker that dies takes its child with it); the child uses
the worker's GPU when it has one (`--device auto`). A subject whose archive exists, reads back intact and
names the same input file (name and size) is skipped; missing output folders are created. Results go to a
table (CSV, or Parquet with pyarrow) rewritten atomically after every subject, so an interrupted run keeps
what it finished.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .archive import read_archive
from .atomic import atomic_outputs
from .codecs import parse_setting, setting_names
from .errors import ArchiveError, InputError
from .jobs import CompressJob, compress_command


@dataclass
class Subject:
    input: Path
    output: Path
    options: dict[str, str] = field(default_factory=dict)  # compress flag (without dashes) → value


@dataclass
class Outcome:
    input: str
    output: str
    status: str  # "done", "skipped" (verified earlier result) or "failed"
    ratio: float | None = None  # raw 16-bit bytes / archive bytes
    psnr: float | None = None  # dB; None for infinite (exact) or unknown
    seconds: float | None = None
    worker: str = ""
    error: str = ""


def read_manifest(path: str | os.PathLike) -> list[Subject]:
    """The subjects of a CSV/TSV manifest (delimiter from the extension: .tsv → tab, else comma).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of Subject

    Raises
    ------
    InputError
        For a missing file, no input and output columns, an empty input or output, or two subjects
        writing the same output.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if not rows or not {"input", "output"} <= set(rows[0]):
        raise InputError(f"{path}: a manifest needs a header with columns 'input' and 'output' and one row a subject")
    subjects = []
    for number, row in enumerate(rows, start=2):
        if not row.get("input") or not row.get("output"):
            raise InputError(f"{path}, line {number}: 'input' and 'output' must not be empty")
        options = {k.strip(): v.strip() for k, v in row.items() if k not in ("input", "output") and v and v.strip()}
        subjects.append(Subject(path.parent / row["input"].strip(), path.parent / row["output"].strip(), options))
    outputs = [s.output.resolve() for s in subjects]
    if len(set(outputs)) != len(outputs):
        raise InputError(f"{path}: two subjects write the same output")
    return subjects


def verified(subject: Subject) -> Outcome | None:
    """The outcome of an earlier run if the subject's archive exists, reads back intact and was made from this
    input file (same name and size).

    Parameters
    ----------
    subject : Subject

    Returns
    -------
    Outcome or None
    """
    if not subject.output.is_file() or not subject.input.is_file():
        return None
    try:
        archive = read_archive(subject.output)
    except ArchiveError:
        return None
    source = archive.manifest.get("source") or {}
    if source.get("name") != subject.input.name or source.get("file_bytes") != subject.input.stat().st_size:
        return None
    raw = math.prod(archive.manifest["shape"]) * 2
    return Outcome(str(subject.input), str(subject.output), "skipped", raw / subject.output.stat().st_size,
                   (archive.manifest.get("metrics") or {}).get("psnr"))


def compress_subject(subject: Subject) -> Outcome:
    """Compress one subject in a child process (runs on a worker, which creates the output's folders).

    Parameters
    ----------
    subject : Subject

    Returns
    -------
    Outcome
        Failures become a failed Outcome.
    """
    try:
        subject.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Outcome(str(subject.input), str(subject.output), "failed", worker=_worker_name(),
                       error=f"{subject.output.parent}: cannot create the output folder: {exc.strerror or exc}")
    options = dict(subject.options)
    codec, preset = options.pop("codec", None), options.pop("preset", None)
    names = setting_names()
    try:
        settings = {k: parse_setting(k, v) for k, v in options.items() if k in names}
    except InputError as exc:
        return Outcome(str(subject.input), str(subject.output), "failed", worker=_worker_name(), error=str(exc))
    flags = [part for k, v in options.items() if k not in names for part in (f"--{k.replace('_', '-')}", v)]
    start = time.monotonic()
    job = CompressJob(*compress_command(subject.input, subject.output, codec, settings, preset, tuple(flags))).start()
    try:
        code = job.wait()
    except BaseException:
        job.cancel()
        raise
    outcome = Outcome(str(subject.input), str(subject.output), "done" if code == 0 else "failed",
                      seconds=round(time.monotonic() - start, 2), worker=_worker_name())
    if code == 0 and job.done_event:
        outcome.ratio, outcome.psnr = job.done_event["ratio_raw16"], job.done_event["psnr"]
    else:
        outcome.status, outcome.error = "failed", job.error or f"exit code {code}"
    return outcome


def run(subjects: list[Subject], client, retries: int = 2,
        report: Callable[[Outcome, int, int], None] | None = None) -> list[Outcome]:
    """Compress every subject not verified done on a Dask client.

    Parameters
    ----------
    subjects : list of Subject
    client : distributed.Client
    retries : int
        Times a task is retried when its worker fails (dies or raises).
    report : callable or None
        Called as report(outcome, finished, total) after each subject.

    Returns
    -------
    list of Outcome
    """
    from distributed import as_completed

    outcomes: list[Outcome] = []
    pending = []
    for subject in subjects:
        earlier = verified(subject)
        if earlier is not None:
            outcomes.append(earlier)
            if report:
                report(earlier, len(outcomes), len(subjects))
        else:
            pending.append(subject)
    futures = {client.submit(compress_subject, s, retries=retries, pure=False, key=f"subject-{i}-{s.input.name}"): s
               for i, s in enumerate(pending)}
    for future in as_completed(futures):
        subject = futures[future]
        try:
            outcome = future.result()
        except Exception as exc:  # the task failed on every try (e.g. its workers kept dying)
            outcome = Outcome(str(subject.input), str(subject.output), "failed", error=_one_line(exc))
        outcomes.append(outcome)
        if report:
            report(outcome, len(outcomes), len(subjects))
    return outcomes


def write_results(outcomes: Iterable[Outcome], path: str | os.PathLike) -> None:
    """Write the results table atomically: CSV, or Parquet (needs pyarrow) for a .parquet path.

    Parameters
    ----------
    outcomes : iterable of Outcome
    path : str or os.PathLike
    """
    rows = [asdict(o) for o in outcomes]
    names = [f.name for f in fields(Outcome)]
    path = Path(path)
    with atomic_outputs([path], force=True) as (temp,):
        if path.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise InputError("writing Parquet needs pyarrow (pip install pyarrow); or name a .csv") from None
            pq.write_table(pa.table({n: [r[n] for r in rows] for n in names}), temp)
        else:
            with open(temp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=names)
                writer.writeheader()
                writer.writerows(rows)


def local_client(workers: int, threads_per_worker: int = 1):
    """A Dask client on a local cluster.

    Parameters
    ----------
    workers : int
        Worker processes.
    threads_per_worker : int

    Returns
    -------
    distributed.Client
    """
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=":0")
    return Client(cluster)


def slurm_cluster(cores: int, memory: str, gpus: int = 0, queue: str | None = None, walltime: str = "24:00:00"):
    """A dask-jobqueue SLURM cluster (not yet scaled). Site settings come from dask-jobqueue's configuration.

    Parameters
    ----------
    cores : int
        Cores of each job (one worker per job).
    memory : str
        Memory of each job, e.g. "16GB".
    gpus : int
        GPUs of each job, requested with --gres=gpu:N.
    queue : str or None
        The SLURM partition.
    walltime : str

    Returns
    -------
    dask_jobqueue.SLURMCluster
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("SLURM needs dask-jobqueue: pip install 'sirencompress[cluster]'") from None
    extra = [f"--gres=gpu:{gpus}"] if gpus else []
    return SLURMCluster(cores=cores, processes=1, memory=memory, queue=queue, walltime=walltime,
                        job_extra_directives=extra)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
