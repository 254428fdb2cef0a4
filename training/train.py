"""The training loop: one linear function, from corpus files to a self-normalized artifact.

Run directory layout (`config.out_dir`):
    words.txt            the vocabulary (built on the first run, reused on resume)
    cache/               encoded corpora (memory-mapped id arrays)
    checkpoint.pt        model + schedule after the last finished epoch (atomic)
    best.safetensors     weights of the epoch with the best dev perplexity
    history.json         per-epoch metrics
    artifact/            the final artifact (config.json, words.txt, model.safetensors)

Learning-rate schedule (paper 1, section 5; `training/schedule.py`): a fixed rate while the
dev normalized perplexity improves by at least `anneal_threshold` (0.3 %) per epoch; from the
first epoch that improves less, the rate is halved before each of `anneal_epochs` further
epochs; never more than `max_epochs` in all. The artifact holds the weights of the best dev
epoch.

Resume: every epoch re-seeds the random generators from (seed, epoch, rank), and SGD has no
state beyond the learning rate, so resuming from a checkpoint reproduces the uninterrupted run.
`max_epochs` and `anneal_epochs` may be raised on resume to train a finished run longer.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import distributed
from tqdm import tqdm

from rescorer.artifact import Artifact, save_artifact
from rescorer.atomic import (
    atomic_file,
    check_directory_can_be_made,
    make_directory,
    write_bytes_atomic,
    write_text_atomic,
)
from rescorer.errors import ConfigError, InputError, OutputError
from rescorer.file_lock import try_exclusive_lock
from rescorer.model import LstmLanguageModel, ModelConfig, detach_state
from rescorer.precision import native_bf16
from rescorer.subword import MAX_TOKENIZER_BYTES, TOKENIZER_FILE, SubwordTokenizer, train_sentencepiece
from rescorer.vocab import Vocabulary, build_vocabulary, read_symbol_table
from training.adaptation import adaptation_provenance, load_init, model_from_init, vocabulary_coverage
from training.batches import BpttBatches, ordered_stream
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import SELF_NORMALIZED_LOSSES, TrainConfig
from training.corpus import (
    EncodedCorpus,
    count_words,
    encode_corpus,
    iter_sentences,
    sentences_from_ids,
    unigram_counts,
)
from training.distributed import (
    DistributedContext,
    average_gradients,
    init_distributed,
    pick_device,
    shutdown_distributed,
    synchronize_parameters,
)
from training.divergence import DivergenceGuard
from training.noise import UnigramNoise
from training.objective import TrainingObjective
from training.perplexity import evaluate
from training.reference import FrozenReference, ReferenceFeatures, artifact_digest, load_reference
from training.schedule import Schedule
from training.sgd import sgd_step
from training.teacher_cache import TeacherTopK, corpus_digest, shared_store_directory

CHECKPOINT_FORMAT = 2  # checkpoints of another format are refused on resume
RESUMABLE_OVERRIDES = {"max_epochs", "anneal_epochs", "device", "precision", "out_dir",  # may change on --resume
                       "teacher_store"}  # where the stored teachers live, not what they are
REFERENCE_CACHE_LIMIT = 4 << 30  # bytes of cached reference features before we ask for recomputation


class ResumeError(InputError):
    pass


@dataclass
class TrainResult:
    artifact_path: Path | None  # None on non-main ranks
    history: list[dict[str, Any]]
    final_dev: dict[str, Any] | None


def corpus_identity(path: str) -> str | None:
    """sha256 of a corpus file's bytes (None: the file is gone), so that a resumed run can tell
    that it reads the text it began with."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _absolute(config: TrainConfig) -> TrainConfig:
    """The config with absolute corpus and vocabulary paths: a run resumed from another working
    directory reads the same files, not files of the same relative name."""
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).absolute())

    return replace(config, train_path=absolute(config.train_path), dev_path=absolute(config.dev_path),
                   later_train_paths=tuple(absolute(p) for p in config.later_train_paths),
                   vocab_path=absolute(config.vocab_path), teacher_store=absolute(config.teacher_store or None))


def available_memory_bytes(device: torch.device, cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """Memory a new model can take on `device`: free memory on CUDA; on Linux the host's
    MemAvailable, or less where the cgroup (a container's memory limit) allows less; None where
    it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    host = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                host = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limited = cgroup_memory_available(cgroup_root)
    known = [v for v in (host, limited) if v is not None]
    return min(known) if known else None


def cgroup_memory_available(root: str = "/sys/fs/cgroup") -> int | None:
    """The cgroup's memory limit less what it uses (v2 `memory.max` - `memory.current`, else v1
    `memory/memory.limit_in_bytes` - `memory.usage_in_bytes`); None with no limit or no file.
    Inside a memory-limited container MemAvailable is the host's, not the limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(root, limit_file).read_text().strip()
            if limit_text == "max":
                return None
            limit, usage = int(limit_text), int(Path(root, usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= 1 << 60:  # cgroup v1 writes "no limit" as a page-rounded 2^63
            return None
        return max(limit - usage, 0)
    return None


def check_model_fits(model_config: ModelConfig, device: torch.device) -> None:
    """Refuse, before any weight is allocated, a model whose fp32 weights alone exceed the memory
    available (training also holds their gradients, checkpoints and activations): a typo such as
    --embedding-dim 1000000000 is one line naming the sizes, not an allocator traceback or a
    process killed for memory."""
    with torch.device("meta"):  # shapes only, nothing allocated
        parameters = sum(p.numel() for p in LstmLanguageModel(model_config).parameters())
    available = available_memory_bytes(device)
    if available is not None and parameters * 4 > available:
        raise ConfigError(f"a model of {parameters:,} parameters needs {parameters * 4 / 2**30:,.1f} GiB for its"
                          f" weights alone and {available / 2**30:,.1f} GiB are available on {device.type}; choose"
                          " smaller --embedding-dim, --hidden-dim, --num-layers, --projection-dim or --experts")


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    config = _absolute(config)
    run_dir = Path(config.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir}: exists and is not a directory (--out names the run directory)")
    if config.teacher_store:
        check_directory_can_be_made(config.teacher_store)  # before any work: a file in the way is bad input
    checkpoint_path = run_dir / "checkpoint.pt"
    checkpoint = _checkpoint_to_resume(config, checkpoint_path) if resume else None
    if checkpoint is None and checkpoint_path.exists():
        raise ResumeError(
            f"{checkpoint_path} exists: pass --resume to continue that run, or choose another --out"
        )
    for held in (run_dir / "config.json", run_dir / "artifact" / "config.json"):
        if checkpoint is None and held.exists():  # a run writes words.txt and checkpoints into --out
            raise OutputError(f"{run_dir}: holds an artifact ({held}); training would overwrite files beside it;"
                              " choose another --out")
    context = init_distributed("cuda" if pick_device(config.device, DistributedContext()).type == "cuda" else "cpu")
    # Denormals in the LSTM backward slow CPU arithmetic down (docs/ARCHITECTURE.md, 5). The
    # flag is process-wide processor state, so it is set for training only and reset after.
    torch.set_flush_denormal(True)
    try:
        return _train(config, checkpoint, context, progress)
    finally:
        torch.set_flush_denormal(False)
        shutdown_distributed(context)


def _lock_run_directory(run_dir: Path, resuming: bool):
    """Hold an exclusive lock on `run_dir` for this run (released when the process ends): a
    second run started on the same --out is refused instead of mixing its files with ours."""
    handle = try_exclusive_lock(run_dir / ".lock")  # held open for the run's lifetime
    if handle is None:
        raise OutputError(f"{run_dir}: another training run is using this --out; wait for it or choose"
                          " another --out")
    if not resuming and (run_dir / "checkpoint.pt").exists():  # a run that finished while we waited
        handle.close()
        raise ResumeError(f"{run_dir / 'checkpoint.pt'} exists: pass --resume to continue that run, or choose"
                          " another --out")
    return handle


def _checkpoint_to_resume(config: TrainConfig, path: Path) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path}: checkpoint format {checkpoint.get('format')!r}, this trainer resumes format"
                          f" {CHECKPOINT_FORMAT} only; start the run again in a new --out")
    # a key missing from an older checkpoint had the field's default then; corpus paths that an
    # older checkpoint stored relative are read from the working directory, as they were then
    stored = {**TrainConfig.defaults(), **checkpoint["config"]}
    for key in ("train_path", "dev_path", "vocab_path"):
        if stored.get(key) is not None:
            stored[key] = str(Path(stored[key]).absolute())
    stored["later_train_paths"] = [str(Path(p).absolute()) for p in stored.get("later_train_paths") or ()]
    identities = checkpoint.get("corpus_identity", {})
    for corpus, digest in identities.items():
        now = corpus_identity(corpus)
        if now != digest:
            raise ResumeError(f"{path}: the run trained on {corpus}, which {'is gone' if now is None else 'has changed'}"
                              " since; a resumed run must see the corpora it began with (start a new --out)")
    differing = sorted(
        k for k, v in config.to_dict().items() if k not in RESUMABLE_OVERRIDES and _as_stored(stored.get(k)) != _as_stored(v)
    )
    if differing:
        details = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {getattr(config, k)!r}" for k in differing)
        raise ResumeError(f"{path}: cannot resume with a different configuration ({details})")
    return checkpoint


def _as_stored(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class _PreparedRun:
    """Everything checked and read before the model exists: the inputs, the run directory (made
    and locked), the vocabulary and the encoded corpora."""

    device: torch.device
    run_dir: Path
    show: bool  # progress on this rank
    lock: Any  # the run directory's lock, held while this object lives (main rank)
    init: Artifact | None  # adaptation: the model to start from
    init_dev: dict | None  # its dev perplexity
    reference_artifact: Artifact | None
    teachers: list[Artifact]
    coverage: Any  # the first corpus's coverage by the init's or teachers' vocabulary
    digests: dict[str, str]  # of the init, reference and teachers
    identities: dict[str, str | None]  # of the corpora
    vocab: Vocabulary
    train_corpora: list[EncodedCorpus]
    dev_corpus: EncodedCorpus
    train_ids: Any  # the training stream, corpora in order
    dev_sentences: list
    model_config: ModelConfig
    tokenizer: SubwordTokenizer | None  # a subword LM's sentencepiece model


@dataclass
class _Objective:
    """The model and what trains it."""

    model: LstmLanguageModel
    step_fn: TrainingObjective
    noise: UnigramNoise | None
    reference: FrozenReference | None


@dataclass
class _EpochRunner:
    """What one pass over the training stream needs, fixed for the whole run (`run`: one epoch)."""

    step_fn: TrainingObjective
    model: LstmLanguageModel
    batches: BpttBatches
    reference_features: ReferenceFeatures | TeacherTopK | None
    noise: UnigramNoise | None
    config: TrainConfig
    device: torch.device
    bos_id: int
    show: bool
    guard: DivergenceGuard
    context: DistributedContext

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        """The trained parameters, in one order on every rank (the gradient exchange pairs them)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def run(self, epoch: int, lr: float, schedule: Schedule, generator: torch.Generator) -> tuple[float, int]:
        return _run_epoch(self, epoch, lr, schedule, generator)


def _train(
    config: TrainConfig, checkpoint: dict[str, Any] | None, context: DistributedContext, progress: bool
) -> TrainResult:
    """Prepare the run, build the objective, fit, export (pytorch/examples' word_language_model
    reads in the same order)."""
    run = _prepare_run(config, checkpoint, context, progress)
    objective = _build_objective(config, run, context)
    history, reference_seconds = _fit(config, run, objective, checkpoint, context)
    if not context.is_main:
        return TrainResult(None, history, None)
    adaptation = adaptation_provenance(config, run.coverage, run.init_dev) if run.init is not None else None
    return _export_artifact(config, run.run_dir, objective.model, run.vocab, run.dev_sentences, run.dev_corpus,
                            run.train_corpora, history, adaptation, reference_seconds, run.tokenizer)


def _prepare_run(config: TrainConfig, checkpoint: dict[str, Any] | None, context: DistributedContext,
                 progress: bool) -> _PreparedRun:
    device = pick_device(config.device, context)
    if config.precision == "bf16" and not native_bf16(device):
        raise ConfigError(f"--precision bf16: {device} has no bf16 arithmetic (a CUDA device of compute capability"
                          " 8 or more, or a CPU with AVX-512 BF16 or AMX); train in fp32 here")
    run_dir = Path(config.out_dir)
    # adaptation inputs are checked before anything is written to the run directory
    init = load_init(config) if config.init_path else None
    reference_artifact = None
    if config.reference_path:  # checked even when gamma = 1 leaves it unused
        reference_artifact = load_reference(config.reference_path, init.vocab.sha256, "--reference", device)
    teachers = _load_teachers(config, device)
    vocabulary_source = init if init is not None else teachers[0] if teachers else None
    # every corpus checked before anything is written (pieces spell any word: nothing to count)
    coverages = [vocabulary_coverage(p, vocabulary_source.vocab) for p in config.train_paths] \
        if vocabulary_source and vocabulary_source.tokenizer is None else []
    _check_same_tokenizer([a for a in (init, reference_artifact, *teachers) if a is not None])
    digests = _adaptation_digests(config)
    if checkpoint is not None and checkpoint.get("adaptation_digests", {}) != digests:
        raise ResumeError(f"{run_dir / 'checkpoint.pt'}: the init or reference artifact changed since the run began")
    created = make_directory(run_dir)  # what it made is removed again if the corpora are refused
    lock = _lock_run_directory(run_dir, checkpoint is not None) if context.is_main else None
    try:
        vocab, train_corpora, dev_corpus, tokenizer = _prepare_data(config, run_dir, context, checkpoint,
                                                                    vocabulary_source)
        model_config = ModelConfig(
            vocab_size=len(vocab), embedding_dim=config.embedding_dim, hidden_dim=config.hidden_dim,
            num_layers=config.num_layers, dropout=config.dropout, projection_dim=config.projection_dim,
            tie_weights=config.tie_weights, output_kind=config.model_output_kind, experts=config.experts,
        )
        if init is None:
            check_model_fits(model_config, device)
    except InputError:
        # a corpus refused before training began: a run directory made for it holds only the
        # vocabulary and the encoding cache of a run that never started, so none is left behind
        if created is not None and context.is_main:
            shutil.rmtree(created, ignore_errors=True)
        raise
    identities = {path: corpus_identity(path) for path in (*config.train_paths, config.dev_path)}
    # several corpora: each laid across every batch column in turn, the last one seen last
    train_ids = ordered_stream([c.ids() for c in train_corpora], config.batch_size * context.world_size,
                               config.train_paths)
    dev_sentences = sentences_from_ids(dev_corpus.ids(), vocab.bos_id, vocab.eos_id)
    if coverages and context.is_main:  # what the run starts from, with or without a progress bar
        whose = "the init's" if init is not None else "the teachers'"
        for path, coverage in zip(config.train_paths, coverages, strict=True):
            tqdm.write(coverage.describe(path, whose))
    init_dev = None
    if init is not None:
        init_dev = evaluate(init.model, dev_sentences, vocab.bos_id, vocab.eos_id, config.eval_max_tokens).to_dict()
        if context.is_main:
            tqdm.write(f"init {config.init_path}: dev ppl {init_dev['normalized_ppl']:.2f}"
                       f" (self-normalized {init_dev['self_normalized_ppl']:.2f})")
    return _PreparedRun(device, run_dir, progress and context.is_main, lock, init, init_dev, reference_artifact,
                        teachers, coverages[0] if coverages else None, digests, identities, vocab, train_corpora,
                        dev_corpus, train_ids, dev_sentences, model_config, tokenizer)


def _build_objective(config: TrainConfig, run: _PreparedRun, context: DistributedContext) -> _Objective:
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    init = run.init
    model = (model_from_init(init, config.dropout) if init is not None else LstmLanguageModel(run.model_config))
    model = model.to(run.device)
    noise = None
    if config.loss in SELF_NORMALIZED_LOSSES:
        counts = unigram_counts(run.train_ids, len(run.vocab), run.vocab.bos_id)
        noise = UnigramNoise(counts, config.noise_alpha).to(run.device)
    reference = None
    if config.uses_reference:
        reference = FrozenReference([run.reference_artifact.model], config.reference_temperature)
    elif config.uses_teacher:
        reference = FrozenReference([t.model for t in run.teachers], config.reference_temperature)
    objective = TrainingObjective(model, config.loss, run.vocab.bos_id, noise, config.sparse_grads,
                                  reference, config.gamma, config.alpha, config.trust_a, config.regularization())
    return _Objective(model, objective, noise, reference)


def _fit(config: TrainConfig, run: _PreparedRun, objective: _Objective, checkpoint: dict[str, Any] | None,
         context: DistributedContext) -> tuple[list[dict[str, Any]], float]:
    """The epoch loop, from the checkpoint's schedule when resuming: each epoch trained, checked
    by the divergence guard, evaluated on dev and checkpointed. Returns (history, seconds spent
    computing or reopening the reference's features)."""
    model, vocab, run_dir = objective.model, run.vocab, run.run_dir
    schedule = Schedule()
    history: list[dict[str, Any]] = []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        history = list(checkpoint["history"])
        # the history is the schedule's one source of truth
        schedule = Schedule.from_history(history, config, checkpoint["schedule"]["global_step"])
    synchronize_parameters(model, context)  # every rank starts from rank 0's weights

    batches = BpttBatches(run.train_ids, config.batch_size, config.bptt, context.rank, context.world_size)
    reference_features, reference_seconds = None, 0.0
    if objective.reference is not None:
        reference_started = time.perf_counter()
        reference_features = _reference_features(config, objective.reference, batches, run.device, run.show,
                                                  run.vocab.bos_id)
        reference_seconds = time.perf_counter() - reference_started
    guard = DivergenceGuard(config.loss, len(vocab), config.noise_samples, run_dir / "checkpoint.pt",
                            run.init_dev["normalized_ppl"] if run.init_dev is not None else None)
    runner = _EpochRunner(objective.step_fn, model, batches, reference_features, objective.noise, config,
                          run.device, vocab.bos_id, run.show, guard, context)
    generator = torch.Generator()

    while not schedule.done(config):
        epoch = schedule.epoch + 1
        lr = schedule.lr(config)
        seed = config.seed * 1_000_003 + epoch * 1_009 + context.rank
        torch.manual_seed(seed)  # dropout
        generator.manual_seed(seed)  # noise samples
        started = time.perf_counter()
        mean_loss, tokens = runner.run(epoch, lr, schedule, generator)
        train_seconds = time.perf_counter() - started
        dev = evaluate(model, run.dev_sentences, vocab.bos_id, vocab.eos_id, config.eval_max_tokens)
        dev_ppl = dev.normalized_ppl
        guard.check_epoch(epoch, lr, mean_loss, dev_ppl, history, schedule.epoch)
        record = {
            "epoch": epoch, "lr": lr, "train_loss_per_token": mean_loss,
            "train_seconds": train_seconds, "train_words_per_second": tokens * context.world_size / train_seconds,
            "dev_normalized_ppl": dev_ppl, "dev_self_normalized_ppl": dev.self_normalized_ppl,
            "dev_log_z_mean": dev.log_z_mean, "dev_log_z_var": dev.log_z_var,
            "precision": config.precision,  # may change when a run resumes: each epoch says its own
        }
        history.append(record)
        if run.show:
            tqdm.write(
                f"epoch {epoch}: lr {lr:.4g} train loss {mean_loss:.4f}"
                f" dev ppl {dev_ppl:.2f} (self-normalized {dev.self_normalized_ppl:.2f},"
                f" mean log Z {dev.log_z_mean:+.3f}) {record['train_words_per_second']:.0f} words/s"
            )
        if context.is_main and dev_ppl < schedule.best_dev_ppl:
            with atomic_file(run_dir / "best.safetensors") as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        schedule.advance(config, dev_ppl)
        if context.is_main:
            save_checkpoint(run_dir / "checkpoint.pt", {
                "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "model": model.state_dict(),
                "schedule": schedule.to_dict(), "history": history, "vocab_sha256": vocab.sha256,
                "adaptation_digests": run.digests, "corpus_identity": run.identities,
            })
            write_text_atomic(run_dir / "history.json", json.dumps(history, indent=2) + "\n")
        context.barrier()
    guard.check_final(history, history[-1]["lr"] if history else config.lr)
    return history, reference_seconds


def _adaptation_digests(config: TrainConfig) -> dict[str, str]:
    """sha256 of the init, reference and teacher artifacts; a resumed run must see the same ones."""
    named = [("init", config.init_path), ("reference", config.reference_path)]
    named += [(f"teacher{i}", path) for i, path in enumerate(config.teacher_paths)]
    return {role: artifact_digest(path) for role, path in named if path}


def _load_teachers(config: TrainConfig, device) -> list[Artifact]:
    """The distillation teachers, one vocabulary for all (checked against the first)."""
    teachers: list[Artifact] = []
    for path in config.teacher_paths:
        vocab_sha = teachers[0].vocab.sha256 if teachers else None
        teachers.append(load_reference(path, vocab_sha, "--teacher", device, self_normalized=False))
    return teachers


def _reference_features(config, reference, batches, device, show, bos_id: int) -> ReferenceFeatures | TeacherTopK:
    if config.uses_teacher and config.teacher_top_k > 0:
        started = time.perf_counter()
        description = {"teachers": [artifact_digest(p) for p in config.teacher_paths],
                       "temperature": config.reference_temperature, "batch_size": config.batch_size,
                       "bptt": config.bptt, "rank": batches.rank, "world_size": batches.world_size,
                       "corpus": corpus_digest(batches.ids)}
        name = f"teacher-top{config.teacher_top_k}"
        if config.teacher_samples:  # the draw is the run's seed's: seeds vary the sampled words too
            description |= {"samples": config.teacher_samples, "sample_seed": config.seed}
            name += f"-samples{config.teacher_samples}-seed{config.seed}"
        if config.teacher_store:  # shared by runs: one directory per description, named by its digest
            directory = shared_store_directory(Path(config.teacher_store), config.teacher_top_k, description)
        else:
            directory = Path(config.out_dir) / name
            if batches.world_size > 1:
                directory = directory / f"rank{batches.rank}-of-{batches.world_size}"
        cache = TeacherTopK(reference, batches, config.teacher_top_k, directory, description, bos_id, device, show,
                            samples=config.teacher_samples, sample_seed=config.seed, tail=config.teacher_tail)
        if show:
            size = TeacherTopK.cache_bytes(batches, cache.k)
            drawn = f" + {cache.samples} drawn" if cache.samples else ""
            tqdm.write(f"teachers' top {cache.top}{drawn} {'computed' if cache.built_now else 'reused'}: {size / 2**20:.0f} MiB"
                       f" in {directory} ({time.perf_counter() - started:.1f} s)")
        return cache
    size = ReferenceFeatures.cache_bytes(batches, reference.feature_dims)
    if config.cache_reference_features and size > REFERENCE_CACHE_LIMIT:
        raise ConfigError(
            f"the reference's features for this corpus would take {size / 2**30:.1f} GiB (limit"
            f" {REFERENCE_CACHE_LIMIT / 2**30:.0f} GiB); pass --cache-reference-features false to"
            " run the reference at every step instead"
        )
    started = time.perf_counter()
    features = ReferenceFeatures(reference, batches, config.cache_reference_features, device)
    if show and config.cache_reference_features:
        tqdm.write(f"reference features cached: {size / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")
    return features


def _run_epoch(runner: _EpochRunner, epoch: int, lr: float, schedule: Schedule,
               generator: torch.Generator) -> tuple[float, int]:
    """One pass over the training stream; returns (mean loss per predicted token, tokens)."""
    model, config, device, noise = runner.model, runner.config, runner.device, runner.noise
    model.train()
    state = None
    reference_windows = runner.reference_features.epoch() if runner.reference_features is not None else None
    loss_total, tokens, window_tokens = 0.0, 0, 0
    window_start = time.perf_counter()
    bar = tqdm(runner.batches, desc=f"epoch {epoch}", disable=not runner.show, unit="batch", leave=False)
    for inputs, targets in bar:
        samples = noise.sample(config.noise_samples, generator).to(device) if noise is not None else None
        inputs, targets = inputs.to(device), targets.to(device)
        reference_window = next(reference_windows) if reference_windows is not None else None  # (B, T, D_t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            loss_sum, state = runner.step_fn(inputs, targets, state, samples, reference_window)
        loss_sum = loss_sum.float()
        state = detach_state(state)
        valid = int((targets != runner.bos_id).sum())
        schedule.global_step += 1
        batch_loss = loss_sum.item()
        if distributed.is_available() and distributed.is_initialized():
            # every rank learns that one rank's loss is not finite, so none waits in the gradient exchange
            flag = torch.tensor([0.0 if math.isfinite(batch_loss) else 1.0], device=loss_sum.device)
            distributed.all_reduce(flag)
            if flag.item() > 0 and math.isfinite(batch_loss):
                batch_loss = math.nan
        norm = math.nan
        if math.isfinite(batch_loss):
            model.zero_grad(set_to_none=True)
            (loss_sum / inputs.shape[0]).backward()  # summed over the window, mean over sequences
            average_gradients(runner.parameters, runner.context)  # the mean over ranks; no-op in one process
            # sgd_step leaves the weights untouched when the gradient norm is not finite.
            norm = sgd_step(model.parameters(), lr, config.clip_norm, config.weight_decay)
        runner.guard.check_step(batch_loss, norm, schedule.global_step, epoch, lr, schedule.epoch)
        loss_total += batch_loss
        tokens += valid
        window_tokens += valid
        if runner.show and schedule.global_step % 20 == 0:
            now = time.perf_counter()
            bar.set_postfix(loss=f"{loss_total / max(tokens, 1):.3f}",
                            words_per_s=f"{window_tokens / (now - window_start):.0f}")
            window_start, window_tokens = now, 0
    bar.close()
    return loss_total / max(tokens, 1), tokens


def _prepare_data(
    config: TrainConfig, run_dir: Path, context: DistributedContext, checkpoint: dict[str, Any] | None,
    vocabulary_source: Artifact | None,
) -> tuple[Vocabulary, list[EncodedCorpus], EncodedCorpus, SubwordTokenizer | None]:
    """Vocabulary, encoded corpora and tokenizer; the main rank builds them, the others reuse its files.
    The vocabulary is the init's (adaptation) or the teachers' (distillation) where there is one."""
    words_path = run_dir / "words.txt"

    def build() -> Vocabulary:
        if words_path.exists() and (checkpoint is not None or not context.is_main):
            return read_symbol_table(words_path, config.unk_symbol)
        if vocabulary_source is not None:
            return vocabulary_source.vocab
        if config.vocab_path:
            return read_symbol_table(config.vocab_path, config.unk_symbol)
        counts = count_words(config.train_paths)
        return build_vocabulary(counts, config.vocab_size, config.min_count, config.unk_symbol)

    if not context.is_main:
        context.barrier()
    tokenizer = _prepare_tokenizer(config, run_dir, context, checkpoint, vocabulary_source)
    vocab = tokenizer.vocabulary() if tokenizer is not None and vocabulary_source is None else build()
    if checkpoint is not None and checkpoint.get("vocab_sha256") != vocab.sha256:
        raise ResumeError(f"{words_path}: vocabulary does not match the checkpoint's")
    cache = run_dir / "cache"
    if context.is_main:
        write_text_atomic(words_path, vocab.to_text())
    train_corpora = [encode_corpus(path, vocab, cache, tokenizer) for path in config.train_paths]
    dev_corpus = encode_corpus(config.dev_path, vocab, cache, tokenizer)
    if context.is_main:
        context.barrier()
    return vocab, train_corpora, dev_corpus, tokenizer


def _check_same_tokenizer(artifacts: list[Artifact]) -> None:
    """The init, the reference and the teachers cut words into one set of pieces (or none do)."""
    digests = {a.path: a.tokenizer.sha256 if a.tokenizer is not None else None for a in artifacts}
    if len(set(digests.values())) > 1:
        listing = ", ".join(f"{p}: {d[:12] if d else 'words'}" for p, d in digests.items())
        raise ConfigError(f"the init, reference and teacher artifacts must share one tokenizer; found {listing}")


def _prepare_tokenizer(config: TrainConfig, run_dir: Path, context: DistributedContext,
                       checkpoint: dict[str, Any] | None, vocabulary_source: Artifact | None
                       ) -> SubwordTokenizer | None:
    """The run's sentencepiece model: the init's or the teachers', the one --sentencepiece-model
    names, or one learned on the training text (--subword-units) and kept in the run directory,
    so a resumed run and every other rank cut words the same way."""
    if vocabulary_source is not None:
        return vocabulary_source.tokenizer
    if not config.uses_subwords:
        return None
    kept = run_dir / TOKENIZER_FILE
    if kept.exists() and (checkpoint is not None or not context.is_main):
        return SubwordTokenizer(kept.read_bytes(), str(kept))
    if config.sentencepiece_model:
        source = Path(config.sentencepiece_model)
        try:
            if source.stat().st_size > MAX_TOKENIZER_BYTES:
                raise ConfigError(f"{source}: {source.stat().st_size:,} bytes, more than a sentencepiece model"
                                  f" holds ({MAX_TOKENIZER_BYTES:,})")
            tokenizer = SubwordTokenizer(source.read_bytes(), str(source))
        except OSError as e:
            raise ConfigError(f"--sentencepiece-model {source}: cannot read ({e.strerror or e})") from None
    else:
        sentences = (words for path in config.train_paths for words in iter_sentences(path))
        tokenizer = train_sentencepiece(sentences, config.subword_units, config.subword_kind)
    write_bytes_atomic(kept, tokenizer.model_bytes)
    return tokenizer


def _export_artifact(config, run_dir, model, vocab, dev_sentences, dev_corpus, train_corpora, history,
                     adaptation, reference_seconds: float = 0.0, tokenizer: SubwordTokenizer | None = None
                     ) -> TrainResult:
    model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    model.to("cpu")
    final_dev = evaluate(model, dev_sentences, vocab.bos_id, vocab.eos_id, config.eval_max_tokens,
                         num_oov=dev_corpus.num_oov,
                         num_words=dev_corpus.num_words if tokenizer is not None else None).to_dict()
    best_epoch = min(history, key=lambda r: r["dev_normalized_ppl"])["epoch"]
    provenance = {
        "loss": "nce+kld" if config.uses_reference else config.loss,
        "noise_alpha": config.noise_alpha if config.loss in SELF_NORMALIZED_LOSSES else None,
        "noise_samples": config.noise_samples if config.loss in SELF_NORMALIZED_LOSSES else None,
        "train_data": config.train_path if not config.later_train_paths else config.train_paths,
        "dev_data": config.dev_path,
        "train_words": sum(c.num_words for c in train_corpora),
        "train_sentences": sum(c.num_sentences for c in train_corpora),
        "epochs": len(history), "best_epoch": best_epoch,
        "train_seconds": sum(r["train_seconds"] for r in history),
        "final_dev": final_dev, "train_config": config.to_dict(),
    }
    if adaptation is not None:
        provenance["adaptation"] = adaptation
    if config.teacher_paths:
        provenance["distillation"] = {
            "teachers": [{"path": path, "sha256": artifact_digest(path)} for path in config.teacher_paths],
            "loss": config.loss, "alpha": config.alpha if config.loss == "interp" else None,
            "trust_a": config.trust_a if config.loss in ("tr", "nce-tr") else None,
            "temperature": config.reference_temperature, "teacher_top_k": config.teacher_top_k,
            "teacher_samples": config.teacher_samples, "teacher_tail": config.teacher_tail,
            # computing (or, on a resumed run, reopening) the stored teachers or their features
            "teacher_seconds": reference_seconds,
        }
    path = save_artifact(Artifact(model, vocab, provenance, tokenizer=tokenizer), run_dir / "artifact")
    return TrainResult(path, history, final_dev)
