"""Rescore ASR N-best lists with self-normalized LSTM language models.

The public API, everything a script needs (the CLI and the service use the same functions):

    import rescorer
    lm = rescorer.load_artifact("runs/lm/artifact")                  # verified, never unpickled
    lists = rescorer.read_nbest(rescorer.NbestSource("dev.jsonl.gz"))  # JSONL, Kaldi, ESPnet, ...
    scores = rescorer.score_nbest(lm, lists)                           # our LM, batched, no softmax
    weights = rescorer.Weights(lm_weight=0.5, interp_weight=1.0)       # or rescorer.tune_weights(...)
    reranked = rescorer.rerank(lists, scores, weights)                 # best hypothesis first
    print(rescorer.compute_wer([u.ref for u in lists], [u.hyps[0].text for u in reranked]).wer)

Scores are natural-log probabilities, higher is better (docs/ARCHITECTURE.md). Bad input raises
`InputError`, whose message names the file and line or field.
"""

from rescorer.artifact import Artifact, load_artifact, save_artifact
from rescorer.combination import NbestArrays, Weights, best_hypotheses, total_scores
from rescorer.errors import InputError
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.nbest import Hypothesis, Utterance
from rescorer.rerank import rerank, score_nbest
from rescorer.sentence_scoring import SentenceScores, score_sentences
from rescorer.tuning import SearchSpace, tune_weights
from rescorer.wer.counts import WerResult, compute_wer
from rescorer.wer.nbest_evaluation import error_table, evaluate_set

__all__ = [
    "Artifact", "Hypothesis", "InputError", "NbestArrays", "NbestSource", "SearchSpace", "SentenceScores", "Utterance",
    "Weights", "WerResult", "best_hypotheses", "compute_wer", "error_table", "evaluate_set", "load_artifact",
    "read_nbest", "rerank", "save_artifact", "score_nbest", "score_sentences", "total_scores", "tune_weights",
]
