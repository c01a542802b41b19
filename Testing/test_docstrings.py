"""The public API has numpydoc docstrings: every public function and class has one; a function that takes
arguments documents each in Parameters, and one that returns something has Returns (checked by
`numpydoc.validate`)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from numpydoc import validate as numpydoc_validate

MODULES = [
    "SirenCompressLib", "SirenCompressLib.codecs", "SirenCompressLib.codecs.siren", "SirenCompressLib.codecs.siren3d",
    "SirenCompressLib.codecs.fmri", "SirenCompressLib.codecs.lossless", "SirenCompressLib.io",
    "SirenCompressLib.archive", "SirenCompressLib.pipeline", "SirenCompressLib.metrics", "SirenCompressLib.volume",
    "SirenCompressLib.rate", "SirenCompressLib.batch", "SirenCompressLib.jobs", "SirenCompressLib.entropy",
    "SirenCompressLib.qspace", "SirenCompressLib.quantize", "SirenCompressLib.network", "SirenCompressLib.sample",
    "SirenCompressLib.headers", "SirenCompressLib.motion", "SirenCompressLib.phantom", "SirenCompressLib.fmri_phantom",
    "SirenCompressLib.evaluate.dmri", "SirenCompressLib.evaluate.dmri_report", "SirenCompressLib.evaluate.fmri",
    "SirenCompressLib.evaluate.classical", "SirenCompressLib.evaluate.rd", "SirenCompressLib.noise",
    "SirenCompressLib.codecs.transform", "SirenCompressLib.context_model", "SirenCompressLib.wavelet",
]
# numpydoc's codes: no docstring; a parameter undocumented or unknown; no Returns (Yields) though it returns (yields)
FUNCTION_CHECKS = {"GL08", "PR01", "PR02", "RT01", "YD01"}
CLASS_CHECKS = {"GL08"}


def public_api() -> dict[str, tuple[object, set[str]]]:
    """Qualified name → (object, the numpydoc checks it must pass): the package's `__all__`, each module's
    public functions and classes defined in it, and the methods of the `Codec` protocol."""
    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        names = module.__all__ if name == "SirenCompressLib" else [n for n in vars(module) if not n.startswith("_")]
        for attr in names:
            obj = getattr(module, attr)
            if inspect.isfunction(obj) and (obj.__module__ == name or name == "SirenCompressLib"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = (obj, FUNCTION_CHECKS)
            elif inspect.isclass(obj) and (obj.__module__ == name or name == "SirenCompressLib"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = (obj, CLASS_CHECKS)
    from SirenCompressLib.codecs import Codec

    for attr, obj in vars(Codec).items():
        if inspect.isfunction(obj) and not attr.startswith("_"):
            found[f"SirenCompressLib.codecs.Codec.{attr}"] = (obj, FUNCTION_CHECKS)
    return found


def problems(name: str, checks: set[str]) -> list[str]:
    return [f"{code}: {message}" for code, message in numpydoc_validate.validate(name)["errors"] if code in checks]


def test_the_walk_finds_the_api():
    api = public_api()
    assert {"SirenCompressLib.pipeline.compress", "SirenCompressLib.codecs.Codec.encode",
            "SirenCompressLib.codecs.get_codec", "SirenCompressLib.codecs.lossless.decode_slice",
            "SirenCompressLib.volume.Volume4D"} <= set(api)


@pytest.mark.parametrize("name", sorted(public_api()))
def test_public_docstring(name):
    _, checks = public_api()[name]
    assert not problems(name, checks)


def test_the_check_fails_without_sections(monkeypatch):
    from SirenCompressLib import pipeline

    monkeypatch.setattr(pipeline.compress, "__doc__", "Encode a volume.")
    assert {p[:4] for p in problems("SirenCompressLib.pipeline.compress", FUNCTION_CHECKS)} == {"PR01", "RT01"}
    monkeypatch.setattr(pipeline.compress, "__doc__", None)
    assert problems("SirenCompressLib.pipeline.compress", FUNCTION_CHECKS)[0].startswith("GL08")
