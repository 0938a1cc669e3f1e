"""``--set`` nested overrides: parsing, type checks, precedence (defaults < --config < flags < --set), errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main, make_parser
from training.cli.build import build_overrides
from training.cli.common import config_from
from training.cli.encoder import encoder_config
from training.cli.genrec import genrec_configs
from training.config import BenchSeqRecConfig, BuildConfig, ConfigError, SeqRecConfig, apply_sets, load_config


def test_values_are_read_as_yaml_and_typed_by_the_field() -> None:
    cfg = apply_sets(
        BuildConfig(),
        [
            "seqrec.lr=0.002",
            "seqrec.epochs=5",
            "seqrec.use_text=false",
            "seqrec.device=cuda",
            "genrec.prior_weights=[1, 2.5]",
            "semantic_ids.hidden=[64]",
            "version=null",
            "markov_shapes=[{}, {window: 3}]",
            "genrec.dropout=1e-3",  # PyYAML keeps 1e-3 a string: a float field still takes it
            "embed={batch_size: 16}",
        ],
    )
    assert cfg.seqrec.lr == 0.002 and cfg.seqrec.epochs == 5 and cfg.seqrec.use_text is False
    assert cfg.seqrec.device == "cuda" and cfg.version is None
    assert cfg.genrec.prior_weights == [1.0, 2.5] and all(isinstance(w, float) for w in cfg.genrec.prior_weights)
    assert cfg.semantic_ids.hidden == [64] and cfg.markov_shapes == [{}, {"window": 3}]
    assert cfg.genrec.dropout == pytest.approx(0.001) and cfg.embed.batch_size == 16
    assert cfg.embed.max_length == BuildConfig().embed.max_length  # a section mapping merges, it does not replace
    assert isinstance(apply_sets(SeqRecConfig(), ["max_minutes=3"]).max_minutes, float)  # int widened


def test_a_dict_field_takes_free_keys() -> None:
    cfg = apply_sets(BenchSeqRecConfig(), ["model_overrides.fusion.lr=0.002", "model_overrides.fusion.epochs=3"])
    assert cfg.model_overrides == {"fusion": {"lr": 0.002, "epochs": 3}}
    with pytest.raises(ConfigError, match=r"--set model_overrides\.fusion: expected a mapping"):
        apply_sets(BenchSeqRecConfig(), ["model_overrides.fusion=1", "model_overrides.fusion.lr=1"])


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("seqrec.hiden=32", r"unknown key 'hiden' in seqrec \(valid keys: .*hidden.*\)"),
        ("sqrec.lr=0.1", r"unknown key 'sqrec' \(valid keys: .*seqrec.*\)"),
        ("seqrec.lr=fast", r"--set seqrec.lr: expected float, got 'fast'"),
        ("seqrec.epochs=2.5", r"--set seqrec.epochs: expected int, got 2.5"),
        ("seqrec.use_text=1", r"--set seqrec.use_text: expected bool, got 1"),
        ("version=2024", r"--set version: expected a string, got 2024 \(quote it"),
        ("genrec.prior_weights=[1, x]", r"prior_weights\[1\]: expected float"),
        ("seqrec=3", r"--set seqrec: expected a mapping of SeqRecConfig fields"),
        ("seqrec.lr.x=1", r"seqrec.lr is a value, not a section"),
        ("seqrec.lr", r"expected section.key=value"),
        ("seqrec.lr=[1", r"not valid YAML"),
    ],
)
def test_bad_paths_and_values_are_clear_errors(pair: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_sets(BuildConfig(), [pair])


def test_yaml_files_are_type_checked_too(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("seqrec:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=f"{f}.seqrec.epochs: expected int, got 'many'"):
        load_config(BuildConfig, f)


def test_precedence_defaults_config_flags_set(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("seqrec:\n  max_minutes: 12.0\n  epochs: 7\n  lr: 0.005\n")
    p = make_parser()

    def resolved(*extra: str) -> BuildConfig:
        args = p.parse_args(["build", "--data", "d", "--config", str(f), *extra])
        return config_from(args, BuildConfig, build_overrides(args))

    plain = resolved()
    assert (plain.seqrec.max_minutes, plain.seqrec.epochs, plain.seqrec.lr) == (12.0, 7, 0.005)  # YAML over defaults
    assert plain.seqrec.hidden == BuildConfig().seqrec.hidden  # untouched fields keep the defaults
    flagged = resolved("--seqrec-minutes", "3")
    assert flagged.seqrec.max_minutes == 3.0  # the dedicated flag over YAML
    both = resolved("--seqrec-minutes", "3", "--set", "seqrec.max_minutes=1", "--set", "seqrec.lr=0.002")
    assert (both.seqrec.max_minutes, both.seqrec.lr, both.seqrec.epochs) == (1.0, 0.002, 7)  # --set over both
    last = resolved("--set", "seqrec.epochs=2", "--set", "seqrec.epochs=4")
    assert last.seqrec.epochs == 4  # repeated: the last one wins


def test_encoder_and_genrec_commands_take_set(tmp_path: Path) -> None:
    p = make_parser()
    enc = encoder_config(
        p.parse_args(["finetune-encoder", "--data", "d", "--lr", "0.001", "--set", "lr=0.0002", "--set", "epochs=1"])
    )
    assert (enc.lr, enc.epochs) == (0.0002, 1)
    f = tmp_path / "g.yaml"
    f.write_text("epochs: 9\nlr: 0.003\n")
    args = p.parse_args(
        [
            "bench-genrec",
            *("--data", "d", "--config", str(f), "--epochs", "4", "--cf-dim", "8"),
            *("--set", "genrec.epochs=5", "--set", "semantic_ids.codebook_size=16"),
        ]
    )
    s = genrec_configs(args)
    assert (s.genrec.epochs, s.genrec.lr, s.semantic_ids.codebook_size, s.semantic_ids.cf_dim) == (5, 0.003, 16, 8)
    with pytest.raises(ConfigError, match=r"unknown key 'epochs' \(valid keys: genrec, semantic_ids\)"):
        genrec_configs(p.parse_args(["bench-genrec", "--data", "d", "--set", "epochs=5"]))
    # The distillation knobs: off by default, flags, and --set over the flags.
    assert genrec_configs(p.parse_args(["bench-genrec", "--data", "d"])).genrec.distill_weight == 0.0
    distill = ["--distill-weight", "0.5", "--distill-top", "50", "--distill-temperature", "3"]
    g = genrec_configs(p.parse_args(["bench-genrec", "--data", "d", *distill, "--set", "genrec.distill_top=20"])).genrec
    assert (g.distill_weight, g.distill_top, g.distill_temperature) == (0.5, 20, 3.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--data", "{tmp}"],
        ["bench-seqrec", "--data", "{tmp}"],
        ["bench-genrec", "--data", "{tmp}"],
        ["finetune-encoder", "--data", "{tmp}", "--out", "{tmp}/run"],
        ["eval-encoder", "--data", "{tmp}"],
        ["encoder-results", "--data", "{tmp}", "--run", "{tmp}/run"],
        ["encoder-downstream", "--data", "{tmp}"],
        ["encoder-collisions", "--data", "{tmp}"],
        ["demo-data", "--out", "{tmp}/demo"],
        ["eval-profiles", "--artifacts", "{tmp}", "--data", "{tmp}"],
    ],
    ids=lambda a: a[0],
)
def test_every_config_command_refuses_an_unknown_key_with_status_2_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*args, "--set", "no_such_field=1"]) == 2
    err = capsys.readouterr().err
    assert f"recsvc-train {argv[0]}: error: --set no_such_field=1: unknown key 'no_such_field' (valid keys: " in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_type_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--data", "d", "--set", "seqrec.epochs=lots"]) == 2
    assert "--set seqrec.epochs: expected int, got 'lots'" in capsys.readouterr().err
