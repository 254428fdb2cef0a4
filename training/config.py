"""The training configuration: every hyper-parameter, its default and why.

The resolved config is stored in each checkpoint and in the artifact's provenance; the CLI's
kebab-case flags map one to one onto these snake_case fields.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Literal

from rescorer.errors import ConfigError
from training.regularization import Regularization

LossKind = Literal["ce", "nce", "kl", "interp", "tr", "nce-tr"]
LOSSES = ("ce", "nce", "kl", "interp", "tr", "nce-tr")
DISTILLATION_LOSSES = ("kl", "interp", "tr", "nce-tr")  # read a teacher
SELF_NORMALIZED_LOSSES = ("nce", "nce-tr")  # train a self-normalized model
# what a distilled student reads by default: (top k, words drawn from the rest) per loss. nce-tr
# reads only the exact columns (its noise words' Q; the drawn words estimate a KL sum that
# NCE+KLD does not form), so its bytes go to a top 256 (docs/RESULTS.md, the three-seed stores)
DEFAULT_TEACHER_STORE = {"kl": (128, 128), "interp": (128, 128), "tr": (128, 128), "nce-tr": (256, 0)}


def option(default, help: str):
    """A field with the help text that `rescorer-train --help` prints (one place for both)."""
    return field(default=default, metadata={"help": help})


PATH_FIELDS = ("train_path", "dev_path", "out_dir", "later_train_paths", "vocab_path", "init_path", "reference_path",
               "teacher_paths", "teacher_store", "sentencepiece_model")


@dataclass(frozen=True)
class TrainConfig:
    train_path: str
    dev_path: str
    out_dir: str
    # corpora read after train_path, in order, each laid across every batch column in turn
    # (training.batches.ordered_stream): `--train A --train B` reads A, then B, in every column
    later_train_paths: tuple[str, ...] = option((), "training corpora read after --train, in order")
    # vocabulary
    vocab_path: str | None = option(None, "a Kaldi words.txt to use as is (default: built from the training text)")
    vocab_size: int | None = option(None, "cap on the vocabulary, counting <s> </s> <unk> (default: every word)")
    min_count: int = option(1, "words seen fewer times in the training text map to <unk>")
    unk_symbol: str = option("<unk>", "the unknown-word symbol")
    # subword units (rescorer/subword.py): the LM predicts sentencepiece pieces instead of words
    subword_units: int = option(0, "0: a word LM; N > 0: learn a sentencepiece model of N pieces on the training"
                                   " text and train over its pieces (no word is ever out of vocabulary)")
    subword_kind: str = option("bpe", "the pieces --subword-units learns: bpe or unigram")
    sentencepiece_model: str | None = option(None, "an existing sentencepiece .model to cut words with (e.g. the"
                                                   " recognizer's bpe.model), instead of --subword-units")
    # model (rescorer.model.ModelConfig)
    embedding_dim: int = option(256, "word embedding size")
    hidden_dim: int = option(256, "LSTM units per layer (paper 1: 1024)")
    num_layers: int = option(2, "LSTM layers (paper 1: 2)")
    dropout: float = option(0.25, "feed-forward dropout, never on recurrent links (paper 1: 0.25)")
    projection_dim: int | None = option(None, "linear bottleneck before the output layer (default: none)")
    tie_weights: bool = option(False, "output rows = input embedding (needs feature size = embedding size)")
    output_kind: str = option("auto", "auto: self_normalized for nce and nce-tr, softmax otherwise; or mos"
                                      " (a mixture of softmaxes, scored with full normalization)")
    experts: int = option(1, "K, the components of a mixture of softmaxes (--output-kind mos)")
    # AWD-LSTM regularization for teachers (paper 2, section 2.1; training/regularization.py)
    weight_drop: float = option(0.0, "DropConnect rate on the LSTM's hidden-to-hidden weights")
    variational_dropout: float = option(0.0, "variational dropout rate on LSTM inputs and outputs, one mask per"
                                             " sequence (replaces --dropout where > 0)")
    embedding_dropout: float = option(0.0, "rate at which whole words are dropped from a batch")
    activation_reg: float = option(0.0, "AR: alpha x mean square of the features reaching the output layer")
    temporal_activation_reg: float = option(0.0, "TAR: beta x mean square step-to-step change of the last LSTM layer")
    # loss
    loss: LossKind = option("nce", "ce: cross-entropy; nce: self-normalized NCE (paper 1, Eq. 12)")
    noise_alpha: float = option(0.75, "NCE noise p_n ~ count^alpha (paper 1, Eq. 13)")
    noise_samples: int = option(256, "S, noise words per batch shared by every position (paper 1: 256); nu = S")
    # adaptation (paper 1, section 4; `rescorer-train adapt`)
    init_path: str | None = option(None, "artifact to start from: its weights, vocabulary, architecture, log_z")
    reference_path: str | None = option(None, "frozen self-normalized reference for NCE+KLD")
    gamma: float = option(1.0, "Eq. 8: weight of the in-domain data; 1 - gamma goes to the reference"
                               " (1 = plain NCE fine-tuning)")
    reference_temperature: float = option(1.0, "temperature T on the reference or teacher: p_t = exp(s_t / T)"
                                               " (paper 1, Eq. 22), softmax(o / T) for a softmax or mos teacher")
    cache_reference_features: bool = option(True, "compute the frozen reference's (or teachers') features once"
                                                  " per run instead of at every step")
    # distillation (paper 2; `rescorer-train distill`)
    teacher_paths: tuple[str, ...] = option((), "frozen teacher artifacts with one vocabulary; their probabilities"
                                                " are averaged")
    alpha: float = option(0.5, "interp: alpha CE + (1 - alpha) KL (paper 2, Eq. 1)")
    trust_a: float = option(0.1, "tr and nce-tr: R(y) = -a ln(1 - Q(y|c)) (paper 2, Eq. 6; 0.1 on PTB, 0.01 on WSJ)")
    # the default store, top 128 + 128 drawn (256 columns of 8 bytes per position): over five seeds its
    # KL and TR students were level with the live teachers' (KL +0.0 %, TR +1.9 %, intervals across
    # 0) at 1.0x a plain epoch, where the live teachers cost 6.6-6.9x and the top 256 alone
    # +10-13 % (experiments/teacher_top_k.py; docs/RESULTS.md)
    teacher_top_k: int | None = option(None, "0: the teachers' full softmax at every step (exact, live); k > 0:"
                                             " their distributions stored once per run, truncated to the k most"
                                             " probable words per position, 8 bytes per word: much cheaper"
                                             " epochs (default: 128 for kl, interp and tr, with"
                                             " --teacher-samples 128; 256 for nce-tr; costs and penalties"
                                             " measured in docs/RESULTS.md)")
    teacher_samples: int | None = option(None, "with --teacher-top-k k: also store this many words per position"
                                               " drawn from the teachers' distribution outside their top k, each"
                                               " weighted by that mass / the number drawn: an unbiased estimate of"
                                               " the tail's KL term instead of spreading it like the unigram (8"
                                               " bytes per word, as the top k; default: 128 for kl, interp and tr"
                                               " where --teacher-top-k is left at its default, else 0)")
    teacher_tail: str = option("prior", "with --teacher-top-k k (kl, interp, tr): the teachers' mass r outside"
                                        " their top k and y spread like the training text's unigram (`prior`)"
                                        " or like the student's own distribution there (`student`: the tail's"
                                        " term becomes -r ln P(tail), which moves the student's tail mass to r"
                                        " and leaves its shape to the data)")
    teacher_store: str | None = option(None, "directory for the stored teachers (--teacher-top-k), shared by"
                                             " runs: runs with the same teachers, temperature, training text,"
                                             " batch layout and k build the store once and read it together (default: each run"
                                             " keeps its own in its run directory)")
    # optimisation
    batch_size: int = option(64, "sequences per batch (paper 1: 128; 64 is faster on 2 cores)")
    bptt: int = option(20, "truncated BPTT length (paper 1: 20)")
    lr: float = option(1.0, "SGD learning rate; the loss is summed over a window and averaged over sequences")
    clip_norm: float = option(15.0, "global gradient-norm clip (paper 1: 15)")
    weight_decay: float = option(1e-6, "weight decay (paper 1: 1e-6)")
    max_epochs: int = option(25, "maximum epochs (paper 1: 25)")
    anneal_threshold: float = option(0.003, "halve the rate once dev perplexity improves by less than this share")
    anneal_epochs: int = option(5, "halved-rate epochs after annealing starts (paper 1: 5)")
    sparse_grads: bool = option(True, "sparse embedding and output-row gradients (NCE touches few rows)")
    seed: int = option(1, "seed of initialization, dropout and noise sampling")
    device: str = option("auto", "auto (cuda when present, else cpu), cpu or cuda")
    precision: str = option("fp32", "fp32, or bf16: mixed precision (autocast; weights, gradients and the SGD"
                                    " step stay fp32) on CUDA or a CPU with bf16 arithmetic (AVX-512 BF16, AMX)")
    eval_max_tokens: int = option(8192, "padded tokens per dev-evaluation batch")

    def _resolve_teacher_store(self) -> None:
        """None (left unset): the loss's default store, DEFAULT_TEACHER_STORE, for a loss that reads
        the teachers; no store otherwise. Samples default to the store's only where k is the
        default's too: an explicit --teacher-top-k k alone is the top-k store (kept for
        comparison), and --teacher-tail student takes no samples."""
        default_k = self.teacher_top_k is None
        distilling = bool(self.teacher_paths) and self.loss in DISTILLATION_LOSSES
        top_k, samples = DEFAULT_TEACHER_STORE[self.loss] if distilling else (0, 0)
        if default_k:
            object.__setattr__(self, "teacher_top_k", top_k)
        if self.teacher_samples is None:
            object.__setattr__(self, "teacher_samples", samples if default_k and self.teacher_tail == "prior" else 0)

    @property
    def train_paths(self) -> list[str]:
        """Every training corpus, in the order the batch columns read them."""
        return [self.train_path, *self.later_train_paths]

    def __post_init__(self) -> None:
        object.__setattr__(self, "teacher_paths", tuple(self.teacher_paths))
        object.__setattr__(self, "later_train_paths", tuple(self.later_train_paths))
        self._resolve_teacher_store()
        # an empty path is a variable left unset in a script, never the current directory: --out ''
        # would train into the working directory, --teacher-store '' would quietly mean no store
        for name in PATH_FIELDS:
            value = getattr(self, name)
            for path in value if isinstance(value, tuple) else (value,):
                if path is not None and not str(path).strip():
                    raise ConfigError(f"{name}: an empty path; expected a file or directory name")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.output_kind not in ("auto", "self_normalized", "softmax", "mos"):
            raise ConfigError(f"output_kind must be auto, self_normalized, softmax or mos; got {self.output_kind!r}")
        kind = self.model_output_kind
        if (self.loss in SELF_NORMALIZED_LOSSES) != (kind == "self_normalized"):
            raise ConfigError(f"loss {self.loss!r} cannot train a {kind} model"
                             " (nce and nce-tr train self_normalized models; ce, kl, interp, tr softmax or mos)")
        if self.loss in DISTILLATION_LOSSES and not self.teacher_paths:
            raise ConfigError(f"loss {self.loss!r} needs at least one teacher")
        if self.teacher_store and not (self.teacher_paths and self.teacher_top_k > 0):
            raise ConfigError("--teacher-store keeps the teachers stored as their top k: it needs teachers and"
                              " --teacher-top-k > 0")
        if self.teacher_samples and not (self.teacher_paths and self.teacher_top_k > 0):
            raise ConfigError("--teacher-samples adds drawn words to the stored top k: it needs teachers and"
                              " --teacher-top-k > 0")
        if self.teacher_tail not in ("prior", "student"):
            raise ConfigError(f"invalid teacher_tail: {self.teacher_tail!r} (expected prior or student)")
        if self.teacher_tail == "student" and not (self.teacher_paths and self.teacher_top_k > 0
                                                   and not self.teacher_samples and self.loss in ("kl", "interp", "tr")):
            raise ConfigError("--teacher-tail student shapes the stored top k's remaining mass like the student:"
                              " it needs teachers, --teacher-top-k > 0 without --teacher-samples, and loss kl,"
                              f" interp or tr (got loss {self.loss!r}, top k {self.teacher_top_k},"
                              f" samples {self.teacher_samples})")
        if self.teacher_paths and (self.reference_path or self.init_path):
            raise ConfigError("teachers (distillation) and init/reference (adaptation) do not mix in one run")
        # every number finite (inf passes ">= 0" and would reach the loss as NaN), then its range
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"invalid {f.name}: {value!r} (expected a finite number)")
        checks = {  # name -> (holds, what is expected)
            "noise_samples": (self.noise_samples >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "bptt": (self.bptt >= 1, ">= 1"), "lr": (self.lr > 0, "> 0"), "clip_norm": (self.clip_norm > 0, "> 0"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"), "max_epochs": (self.max_epochs >= 1, ">= 1"),
            "anneal_epochs": (self.anneal_epochs >= 0, ">= 0"), "min_count": (self.min_count >= 1, ">= 1"),
            "anneal_threshold": (self.anneal_threshold >= 0, ">= 0"),
            "precision": (self.precision in ("fp32", "bf16"), "fp32 or bf16"),
            "teacher_top_k": (isinstance(self.teacher_top_k, int) and self.teacher_top_k >= 0, "an integer >= 0"),
            "teacher_samples": (isinstance(self.teacher_samples, int) and self.teacher_samples >= 0,
                                "an integer >= 0"),
            "eval_max_tokens": (self.eval_max_tokens >= 1, ">= 1"),
            "noise_alpha": (0.0 <= self.noise_alpha <= 1.0, "in [0, 1]: 0 uniform noise, 1 the unigram"),
            "gamma": (0.0 <= self.gamma <= 1.0, "in [0, 1]"),
            "reference_temperature": (self.reference_temperature > 0, "> 0"),
            "alpha": (0.0 <= self.alpha <= 1.0, "in [0, 1]"), "trust_a": (self.trust_a >= 0.0, ">= 0"),
            "experts": (isinstance(self.experts, int) and self.experts >= 1 and (self.experts == 1 or kind == "mos"),
                        "an integer >= 1, and 1 unless the output kind is mos"),
            **{name: (0.0 <= getattr(self, name) < 1.0, "in [0, 1)") for name in
               ("weight_drop", "variational_dropout", "embedding_dropout", "dropout")},
            **{name: (getattr(self, name) >= 0.0, ">= 0") for name in ("activation_reg", "temporal_activation_reg")},
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"invalid {name}: {getattr(self, name)!r} (expected {expected})")
        if self.gamma < 1.0 and not self.reference_path:
            raise ConfigError(f"gamma {self.gamma} < 1 needs a reference model (reference_path)")
        if (self.reference_path or self.gamma < 1.0) and self.loss != "nce":
            raise ConfigError("NCE+KLD adaptation needs loss 'nce'")
        if (self.init_path or self.teacher_paths) and self.vocab_path:
            raise ConfigError("the init artifact or the teachers bring the vocabulary; do not also give vocab_path")
        if self.subword_units < 0 or isinstance(self.subword_units, bool):
            raise ConfigError(f"invalid subword_units: {self.subword_units!r} (expected 0, or a number of pieces > 0)")
        if self.subword_kind not in ("bpe", "unigram"):
            raise ConfigError(f"invalid subword_kind: {self.subword_kind!r} (expected bpe or unigram)")
        if self.subword_units and self.sentencepiece_model:
            raise ConfigError("--subword-units learns a sentencepiece model and --sentencepiece-model brings one:"
                              " give one of them")
        if self.uses_subwords and (self.vocab_path or self.vocab_size or self.min_count != 1):
            raise ConfigError("a subword LM's vocabulary is its pieces: --vocab, --vocab-size and --min-count"
                              " apply to word LMs")
        if self.uses_subwords and (self.init_path or self.teacher_paths):
            raise ConfigError("the init artifact or the teachers bring their tokenizer; do not also give"
                              " --subword-units or --sentencepiece-model")
        if self.reference_path and not self.init_path:
            raise ConfigError("a reference model needs init_path (the vocabulary comes from the init artifact)")

    @property
    def uses_reference(self) -> bool:
        """NCE+KLD: a reference that the loss reads (gamma = 1 is plain NCE and never reads it)."""
        return self.reference_path is not None and self.gamma < 1.0

    @property
    def model_output_kind(self) -> str:
        if self.output_kind != "auto":
            return self.output_kind
        return "self_normalized" if self.loss in SELF_NORMALIZED_LOSSES else "softmax"

    @property
    def uses_subwords(self) -> bool:
        return bool(self.subword_units or self.sentencepiece_model)

    @property
    def uses_teacher(self) -> bool:
        return self.loss in DISTILLATION_LOSSES

    def regularization(self) -> Regularization:
        return Regularization(self.weight_drop, self.variational_dropout, self.embedding_dropout,
                              self.activation_reg, self.temporal_activation_reg)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def defaults(cls) -> dict:
        """Every field that has a default, with it."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
