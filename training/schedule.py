"""Learning-rate schedule of paper 1 (section 5), kept as state from which the rate is derived.

A fixed rate `lr` while the dev normalized perplexity improves by at least `anneal_threshold`
(0.3 %) per epoch. The first epoch that improves less starts the annealing: the next
`anneal_epochs` epochs run at lr/2, lr/4, ..., and training stops after them; never more than
`max_epochs` epochs in all.

The state stores only what was observed (the epoch at whose end annealing started), never
the current rate or a "done" flag: the rate and the stopping decision are derived from it and
the config. That is why `max_epochs` and `anneal_epochs` may be raised when a finished run is
resumed ("train longer"): the continued run is exactly the run that would have had the larger
budget from the start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from training.config import TrainConfig


@dataclass
class Schedule:
    epoch: int = 0  # epochs finished
    prev_dev_ppl: float = math.inf
    best_dev_ppl: float = math.inf
    anneal_start: int | None = None  # the epoch whose small improvement started the annealing
    global_step: int = 0

    def lr(self, config: TrainConfig) -> float:
        """The rate of the next epoch."""
        if self.anneal_start is None:
            return config.lr
        return config.lr / 2 ** (self.epoch + 1 - self.anneal_start)

    def done(self, config: TrainConfig) -> bool:
        if self.epoch >= config.max_epochs:
            return True
        return self.anneal_start is not None and self.epoch >= self.anneal_start + config.anneal_epochs

    def advance(self, config: TrainConfig, dev_ppl: float) -> None:
        """Record the end of the next epoch with its dev perplexity."""
        prev = self.prev_dev_ppl
        improvement = (prev - dev_ppl) / prev if math.isfinite(prev) else math.inf
        self.epoch += 1
        self.prev_dev_ppl = dev_ppl
        self.best_dev_ppl = min(self.best_dev_ppl, dev_ppl)
        if self.anneal_start is None and improvement < config.anneal_threshold:
            self.anneal_start = self.epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_history(cls, history: list[dict[str, Any]], config: TrainConfig, global_step: int) -> Schedule:
        """Replay the recorded dev perplexities: how a resumed run rebuilds its schedule, so the
        checkpoint's history is the one source of truth."""
        schedule = cls(global_step=global_step)
        for record in history:
            schedule.advance(config, record["dev_normalized_ppl"])
        return schedule
