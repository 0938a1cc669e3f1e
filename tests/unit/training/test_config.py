from __future__ import annotations

from pathlib import Path

import pytest

from training.config import BuildConfig, SeqRecConfig, dotted_overrides, load_config


def test_yaml_and_overrides_apply_nested(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("data: /x\nseqrec:\n  hidden: 32\n  lr: 0.001\n")
    cfg = load_config(BuildConfig, f, {"seqrec": {"max_minutes": 1.5}})
    assert cfg.data == "/x"
    assert cfg.seqrec.hidden == 32 and cfg.seqrec.lr == 0.001 and cfg.seqrec.max_minutes == 1.5
    assert BuildConfig().seqrec.hidden == SeqRecConfig().hidden  # defaults untouched


def test_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("seqrec:\n  hiden: 32\n")
    with pytest.raises(ValueError, match="unknown key 'hiden'"):
        load_config(BuildConfig, f)


def test_dotted_overrides_nest_merge_and_read_yaml_values(tmp_path: Path) -> None:
    base = {"seqrec": {"epochs": 2}}
    sets = ["genrec.epochs=3", "genrec.prior_weights=[1, 2.5]", "seqrec.use_text=false", "semantic_ids.lr=0.001"]
    o = dotted_overrides(sets, base)
    assert o == {
        "seqrec": {"epochs": 2, "use_text": False},
        "genrec": {"epochs": 3, "prior_weights": [1, 2.5]},
        "semantic_ids": {"lr": 0.001},
    }
    assert base == {"seqrec": {"epochs": 2}}  # the base is not changed
    f = tmp_path / "c.yaml"
    f.write_text("genrec:\n  epochs: 9\n  lr: 0.003\n")
    cfg = load_config(BuildConfig, f, o)
    assert cfg.genrec.epochs == 3 and cfg.genrec.lr == 0.003 and cfg.genrec.prior_weights == [1, 2.5]
    for bad in ("genrec.epochs", "=3", "genrec..epochs=3"):
        with pytest.raises(ValueError, match=r"expected section\.key=value"):
            dotted_overrides([bad])
    with pytest.raises(ValueError, match="already set"):
        dotted_overrides(["genrec=1", "genrec.epochs=2"])
    with pytest.raises(ValueError, match="unknown key 'epoch'"):
        load_config(BuildConfig, None, dotted_overrides(["genrec.epoch=2"]))


def test_build_refuses_mismatched_encoder_lengths(tmp_path: Path) -> None:
    from training.config import EmbedItemsConfig
    from training.jobs.build import build

    cfg = BuildConfig(data=str(tmp_path), out=str(tmp_path / "out"), embed=EmbedItemsConfig(max_length=64))
    with pytest.raises(ValueError, match="max_length"):
        build(cfg)
    assert not (tmp_path / "out").exists()


SEQREC_CONFIGS = sorted((Path(__file__).resolve().parents[3] / "training" / "configs" / "seqrec").glob("*.yaml"))


def test_the_seqrec_configs_are_found() -> None:
    assert {p.stem for p in SEQREC_CONFIGS} >= {"beauty", "sports", "ml-100k", "scientific"}


@pytest.mark.parametrize("path", SEQREC_CONFIGS, ids=lambda p: p.stem)
def test_shipped_seqrec_configs_load_and_name_known_models_and_shapes(path: Path) -> None:
    from service.core.transitions import PriorShape
    from training.config import BenchSeqRecConfig
    from training.seqrec.registry import MODELS, model_config

    cfg = load_config(BenchSeqRecConfig, path)
    assert cfg.models and set(cfg.models) <= set(MODELS) and cfg.seeds
    assert set(cfg.model_overrides) <= set(cfg.models)
    for m in cfg.models:
        model_config(cfg.seqrec, m, cfg.model_overrides)  # unknown override keys raise
    assert [PriorShape.from_dict(d) for d in cfg.markov_shapes]


def test_the_build_serves_items_at_one_norm_and_a_yaml_can_turn_it_off(tmp_path: Path) -> None:
    from training.config import SERVED_COLD_ID, SERVED_ITEM_NORM

    assert SERVED_ITEM_NORM > 0
    assert BuildConfig().seqrec.item_norm == SERVED_ITEM_NORM  # the served fusion model
    served = BuildConfig().seqrec
    assert (served.cold_id_k, served.cold_id_temperature, served.cold_id_scale) == SERVED_COLD_ID
    assert SeqRecConfig().item_norm == 0.0  # bench / downstream rows keep raw sums unless a preset says so
    f = tmp_path / "c.yaml"
    f.write_text("seqrec:\n  max_minutes: 1.0\n")
    assert load_config(BuildConfig, f).seqrec.item_norm == SERVED_ITEM_NORM  # other keys keep it
    f.write_text("seqrec:\n  item_norm: 0.0\n")
    assert load_config(BuildConfig, f).seqrec.item_norm == 0.0


CONFIGS = Path(__file__).resolve().parents[3] / "training" / "configs"


@pytest.mark.parametrize("name", ["genrec_beauty", "genrec_sports"])
def test_the_genrec_defaults_are_the_shipped_cpu_model(name: str) -> None:
    """The CPU configs differ from GenRecConfig's defaults only in how long they run."""
    import dataclasses

    from training.config import GenRecConfig

    shipped, default = load_config(GenRecConfig, CONFIGS / f"{name}.yaml"), GenRecConfig()
    differ = {f.name for f in dataclasses.fields(GenRecConfig) if getattr(shipped, f.name) != getattr(default, f.name)}
    assert differ <= {"epochs", "max_minutes", "patience"}


def test_every_shipped_config_loads_type_checked() -> None:
    from training.config import BenchSeqRecConfig, EncoderFinetuneConfig, GenRecConfig

    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert len(paths) >= 13
    for path in paths:
        rel = path.relative_to(CONFIGS).as_posix()
        kinds = {"genrec_": GenRecConfig, "seqrec/": BenchSeqRecConfig, "encoder/": EncoderFinetuneConfig}
        cls = next((c for k, c in kinds.items() if rel.startswith(k)), BuildConfig)
        load_config(cls, path)  # unknown keys and wrong types raise
