"""Word error rates, in one place: sclite's alignment (`alignment`), per-hypothesis and corpus
counts (`counts`), the paired bootstrap (`bootstrap`) and the evaluation of N-best lists under
fixed weights: first pass, rescored, oracle, gain share (`nbest_evaluation`)."""
