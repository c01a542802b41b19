"""The clinical-fidelity tables of docs/BENCHMARKS.md from `sirencompress evaluate --dmri --report` folders of
the same original: the reference rows once (they do not depend on the archive), then every folder's compressed
rows with their compression ratio.

    python benchmarks/fidelity_table.py docs/benchmarks/fidelity/default docs/benchmarks/fidelity/cr10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SirenCompressLib.evaluate.dmri import METRICS, TISSUES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    documents = [json.loads((folder / "fidelity.json").read_text()) for folder in parser.parse_args().folders]
    rows = [r for r in documents[0]["rows"] if r["kind"] == "pre-processing"]
    for d in documents:
        ratio = d["settings"]["ratio_raw16"]
        rows += [{**r, "name": f"{r['name']}, CR {ratio:.1f}"} for r in d["rows"] if r["kind"] == "compression"]
    print("| metric | method | " + " | ".join(TISSUES) + " |")
    print("|---|---|" + "---|" * len(TISSUES))
    for metric in METRICS:
        for r in rows:
            cells = [r["relative_error_percent"][metric][t] for t in TISSUES]
            print(f"| {metric} | {r['name']} | " + " | ".join(
                "n/a" if c["mean"] is None else f"{c['mean']:.2f} % (± {c['std']:.2f} %)" for c in cells) + " |")
    print()
    print("| method | " + " | ".join(f"{m} WM" for m in METRICS) + " | angle WM (°) |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for r in rows:
        wm = [r["relative_error_percent"][m]["WM"]["mean_abs"] for m in METRICS]
        angle = f"{r['angle_wm_degrees']['mean']:.2f} ± {r['angle_wm_degrees']['std']:.2f}"
        print(f"| {r['name']} | " + " | ".join(f"{x:.2f}" for x in wm) + f" | {angle} |")


if __name__ == "__main__":
    main()
