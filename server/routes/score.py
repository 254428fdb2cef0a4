from __future__ import annotations

import io

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from rescorer.formats.kaldi import write_cost_archive
from rescorer.formats.text_files import parse_keyed_lines, split_lines
from rescorer.nbest import NbestError
from rescorer.words import split_words
from server.routes.limits import check_count, limit_error
from server.schemas import ScoreRequest, ScoreResponse, SentenceScoreOut, json_response

router = APIRouter(tags=["scoring"])


@router.post("/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, request: Request) -> Response:
    """Natural-log probabilities of sentences (`</s>` included), optionally per token."""
    state = request.app.state
    settings = state.settings
    check_count(["sentences"], len(body.sentences), settings.max_sentences, "sentences")
    sentences = [split_words(s) for s in body.sentences]
    for i, words in enumerate(sentences):
        check_count(["sentences", i], len(words), settings.max_words_per_hyp, "words")
    name, _ = state.registry.get(body.model)
    scores = await state.batcher.submit(name, sentences, settings.request_timeout_s, per_token=body.per_token)
    return json_response(ScoreResponse(model=name, scores=[
        SentenceScoreOut(log_prob=float(scores.log_probs[i]), num_tokens=int(scores.num_tokens[i]),
                         num_oov=int(scores.num_oov[i]),
                         token_log_probs=scores.token_log_probs[i].tolist() if body.per_token else None)
        for i in range(len(sentences))]))


@router.post("/score/kaldi", response_class=PlainTextResponse,
             openapi_extra={"requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}, "required": True}})
async def score_kaldi(request: Request, model: str | None = None) -> PlainTextResponse:
    """Kaldi's sentence-scoring contract over HTTP: `key word word ...` lines in, `key cost` out
    (cost = -ln p, same keys, same order), e.g. `curl --data-binary @text URL/v1/score/kaldi`."""
    state = request.app.state
    settings = state.settings
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as e:
        raise limit_error([], f"body is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:  # the CLI's parser: lines end at \n only, fields split on ASCII whitespace
        keys, sentences = parse_keyed_lines(split_lines(text), "body")
    except NbestError as e:
        raise limit_error([], str(e)) from None
    for line_no, words in enumerate(sentences, start=1):
        check_count([f"line {line_no}"], len(words), settings.max_words_per_hyp, "words")
    if not keys:
        raise limit_error([], "no 'key word word ...' lines in the body")
    check_count([], len(keys), settings.max_sentences, "lines")
    name, _ = state.registry.get(model)
    scores = await state.batcher.submit(name, sentences, settings.request_timeout_s)
    out = io.StringIO()  # the CLI's writer: the same text as `rescorer score`
    write_cost_archive(zip(keys, (-scores.log_probs).tolist(), strict=True), out)
    return PlainTextResponse(out.getvalue())
