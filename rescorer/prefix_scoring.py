"""Scoring with shared prefixes: the LSTM runs once per distinct prefix, not once per token.

The hypotheses of one utterance often share long prefixes. The sentences of a group are
put in a prefix trie over their inputs (`<s> w_1 .. w_k`); depth by depth, one LSTM step
runs for every node of that depth at once, from its parent's state. Every (node, next word)
pair that a sentence needs is then scored from the node's output. The result is the same as
padded scoring (tested); whether it is faster depends on how much is shared versus the cost
of one LSTM call per depth (bench/score_throughput.py measures it).
"""

from __future__ import annotations

import numpy as np
import torch

from rescorer.artifact import Artifact
from rescorer.model import token_log_probs


def score_with_prefix_sharing(
    artifact: Artifact, ids: list[list[int]], max_tokens: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    totals = np.zeros(len(ids), dtype=np.float64)
    per_token: list[np.ndarray] = [np.empty(0)] * len(ids)
    group: list[int] = []
    tokens = 0
    for i, sentence in enumerate(ids):  # groups in input order keep an utterance's hypotheses together
        if group and tokens + len(sentence) + 1 > max_tokens:
            _score_group(artifact, ids, group, totals, per_token)
            group, tokens = [], 0
        group.append(i)
        tokens += len(sentence) + 1
    if group:
        _score_group(artifact, ids, group, totals, per_token)
    return totals, per_token


def _score_group(artifact: Artifact, ids: list[list[int]], group: list[int],
                 totals: np.ndarray, per_token: list[np.ndarray]) -> None:
    model, vocab = artifact.model, artifact.vocab
    device = model.device
    # Trie: node_of[d][prefix] -> node index at depth d; the prefix at depth d holds d+1 inputs.
    node_of: list[dict[tuple[int, ...], int]] = []
    parents: list[list[int]] = []  # per depth: parent node index at depth d-1
    inputs: list[list[int]] = []  # per depth: the input token that leads into the node
    requests: list[tuple[int, int, int, int, int]] = []  # (depth, node, target, sentence, position)
    for index in group:
        sequence = [vocab.bos_id, *ids[index]]
        targets = [*ids[index], vocab.eos_id]
        parent = -1
        for depth, token in enumerate(sequence):
            if depth == len(node_of):
                node_of.append({})
                parents.append([])
                inputs.append([])
            key = tuple(sequence[: depth + 1])
            node = node_of[depth].get(key)
            if node is None:
                node = node_of[depth][key] = len(parents[depth])
                parents[depth].append(parent)
                inputs[depth].append(token)
            requests.append((depth, node, targets[depth], index, depth))
            parent = node

    by_depth: list[list[tuple[int, int, int, int]]] = [[] for _ in node_of]
    for depth, node, target, index, position in requests:
        by_depth[depth].append((node, target, index, position))
    scores = {index: np.zeros(len(ids[index]) + 1) for index in group}
    state = None
    for depth in range(len(node_of)):
        x = torch.tensor(inputs[depth], device=device).unsqueeze(1)  # (n_d, 1)
        if state is not None:
            parent_index = torch.tensor(parents[depth], device=device)
            state = (state[0][:, parent_index], state[1][:, parent_index])  # (L, n_d, H)
        features, state = model.features(x, state)  # (n_d, 1, D)
        needed = by_depth[depth]
        nodes = torch.tensor([n for n, _, _, _ in needed], device=device)
        targets = torch.tensor([t for _, t, _, _ in needed], device=device)
        values = token_log_probs(model, features[nodes, 0], targets).double().cpu().numpy()
        for (_, _, index, position), value in zip(needed, values, strict=True):
            scores[index][position] = value
    for index in group:
        totals[index] = scores[index].sum()
        per_token[index] = scores[index]
