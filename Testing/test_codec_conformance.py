"""Every registered codec keeps the `Codec` contract, on a small phantom: a new codec gets these tests by
registering."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import fields

import numpy as np
import pytest

from SirenCompressLib import compress, decompress
from SirenCompressLib.archive import Archive, check_archive, to_bytes
from SirenCompressLib.codecs import (
    MEMBER_KINDS,
    RATE_TARGETS,
    REGISTRY,
    add_flags,
    codec_of,
    configure,
    flagged_fields,
    get_codec,
    given_settings,
    setting_type,
    summary,
)
from SirenCompressLib.errors import ArchiveError, InputError
from SirenCompressLib.metrics import compare
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import max_error, stored_comparison
from SirenCompressLib.rate import config_for_psnr, config_for_ratio

QUICK = {"layers": 1, "units": 8, "epochs": 5, "qat_epochs": 2, "components": 2, "device": "cpu"}


def quick_config(name: str):
    own = {f.name for f in fields(get_codec(name).Config)}
    return configure(name, {k: v for k, v in QUICK.items() if k in own})


@pytest.fixture(scope="module")
def volume():
    return dwi_phantom(shape=(8, 8, 2), directions=6, bvalues=(1000.0,), noise=0.02)


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def coded(request, volume):
    name = request.param
    return name, quick_config(name), compress(volume, name, quick_config(name))


def test_the_module_describes_itself(coded):
    name, config, _ = coded
    module = get_codec(name)
    assert module.NAME == name and isinstance(module.EXACT, bool) and module.MEMBERS in MEMBER_KINDS
    assert module.RATE_CONTROL <= set(RATE_TARGETS) and type(module.default_config()) is module.Config
    assert all(type(p) is module.Config for p in module.PRESETS.values())
    assert module.DEFAULT_PRESET is None or module.PRESETS[module.DEFAULT_PRESET] == module.default_config()
    assert codec_of(config) == name  # each codec's settings class is its own
    with pytest.raises(AttributeError):  # frozen
        config.seed = 1


def test_compress_refuses_another_codecs_settings(coded, volume):
    name, _, _ = coded
    for other in REGISTRY:
        if other != name:
            expected = get_codec(name).Config
            with pytest.raises(TypeError, match=f"the {name} codec takes .*{expected.__module__}.Config settings"):
                compress(volume, name, quick_config(other))


def test_round_trip_keeps_the_promise(coded, volume):
    name, _, archive = coded
    decoded = decompress(archive).data
    assert decoded.shape == volume.data.shape and decoded.dtype == volume.data.dtype
    bound = max_error(archive)
    if bound is not None:  # an exact codec: bit-exact, or within its archive's bound
        assert np.abs(decoded.astype(np.float64) - volume.data).max() <= bound
    else:  # the metrics the archive states are those of its own decode
        stated, measured = stored_comparison(archive).whole, compare(volume.data, decoded).whole
        assert stated.psnr == pytest.approx(measured.psnr) and np.isfinite(measured.psnr)


def test_decoding_never_imports_torch(coded, monkeypatch):
    _, _, archive = coded
    expected = decompress(archive).data
    for module in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.setitem(sys.modules, module, None)  # `import torch` now fails
    assert np.array_equal(decompress(Archive(archive.manifest, dict(archive.members))).data, expected)


def test_a_corrupt_member_is_an_archive_error(coded):
    _, _, archive = coded
    name = next(k for k, v in archive.members.items() if k.startswith("slices/") and v)
    members = dict(archive.members)
    members[name] = bytes([members[name][0] ^ 0xFF]) + members[name][1:]
    with pytest.raises(ArchiveError):
        check_archive(Archive(archive.manifest, members))
        decompress(Archive(archive.manifest, members))


def test_settings_cross_as_json(coded):
    name, config, archive = coded
    module = get_codec(name)
    assert module.Config.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert module.Config.from_json(archive.manifest["codec"]["config"]) == config
    with pytest.raises(ArchiveError):
        module.Config.from_json({**config.to_json(), "no_such_setting": 1})


def test_cli_flags_give_back_the_config(coded):
    name, config, _ = coded
    parser = argparse.ArgumentParser()
    add_flags(parser)
    argv = []
    for f in flagged_fields(name):
        value = getattr(config, f.name)
        if isinstance(value, bool):
            argv += [f.metadata["flag"]] if value else []
        elif value is not None:
            argv += [f.metadata["flag"], str(value)]
    given = given_settings(parser.parse_args(argv))
    assert configure(name, given) == config
    zeros = [f for f in flagged_fields(name) if setting_type(f) in (int, float) and f.metadata.get("min") == 0]
    for f in zeros:  # a flag given as 0 is given (0 is falsy)
        assert given_settings(parser.parse_args([f.metadata["flag"], "0"]))[f.name] == 0


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_help_gives_each_flag_this_codecs_text(name):
    parser = argparse.ArgumentParser(  # one line per flag
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=100, width=1000))
    add_flags(parser)
    lines = parser.format_help().splitlines()
    for f in flagged_fields(name):
        line = next(line for line in lines if line.lstrip().startswith(f.metadata["flag"] + " "))
        text = re.split(r"\s{2,}", line.strip(), maxsplit=1)[1]
        per_codec = re.findall(r"\[([^\]]+)\] (.*?)(?=; \[|$)", text)  # a flag several codecs use
        assert text == f.metadata["help"] if not per_codec else \
            (f.metadata["help"], True) in [(t, name in names.split(", ")) for names, t in per_codec], line


def test_rate_control_where_declared(coded):
    name, config, _ = coded
    module = get_codec(name)
    volume = dwi_phantom(shape=(16, 16, 2), directions=30, bvalues=(1000.0,), noise=0.02)  # room for a ratio
    if "ratio" in module.RATE_CONTROL:
        if hasattr(module, "member_bytes"):  # a network codec: rate control sizes the network
            size = module.member_bytes(volume, config)
            assert 0 < size(4) < size(64)
        chosen = config_for_ratio(config, volume, 4.0, name)
        reached = volume.data.size * 2 / len(to_bytes(compress(volume, name, chosen)))
        assert chosen != config and reached == pytest.approx(4.0, rel=0.15)
    else:
        with pytest.raises(InputError, match="cannot aim"):
            config_for_ratio(config, volume, 4.0, name)
    if "psnr" in module.RATE_CONTROL and hasattr(module, "psnr_probe"):
        reached, nbytes = module.psnr_probe(volume, config)(config)
        assert np.isfinite(reached) and nbytes > 0
    elif "psnr" in module.RATE_CONTROL:  # a codec that searches its own settings meets the PSNR
        chosen, _ = config_for_psnr(config, volume, 40.0, name)
        assert compare(volume.data, decompress(compress(volume, name, chosen)).data).whole.psnr >= 40.0
    else:
        with pytest.raises(InputError, match="cannot aim"):
            config_for_psnr(config, volume, 30.0, name)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_summary_is_whole_in_the_help(name, capsys):
    """`compress --help` shows each codec's whole summary (the first paragraph of its docstring, which may wrap
    over several lines), not just its first line."""
    from SirenCompressLib.cli import main

    text = summary(name)
    assert text and "\n" not in text and not text.startswith("Codec ")
    first_paragraph = get_codec(name).__doc__.strip().split("\n\n")[0]
    assert text.split()[-1] == first_paragraph.split()[-1]
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert f"{name}: {text.rstrip('.')}" in " ".join(capsys.readouterr().out.split())
