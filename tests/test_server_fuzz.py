"""Property-based fuzzing of the HTTP API against a real server: no input may produce a 5xx.

Bodies are drawn from arbitrary JSON and from objects shaped like the schema with wrong,
extreme or odd values; raw bytes go to the Kaldi form. Bounded: a fixed number of examples.
"""

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rescorer.artifact import save_artifact
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact
from tests.server_harness import running_server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_subnormal=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
UNICODE_SPACES = "\u00a0\u2028\u0085\u3000\u202f\x1c\x1d\x1e\x1f"
odd_text = st.text(max_size=60) | st.sampled_from(["", " ", "the cat", "<s> </s>", "a\u0000b", "\ud7ff" * 3, "x " * 300,
                                                    "the\u00a0cat", "nan inf", "1_0 \u0661"]) \
    | st.text(alphabet=st.sampled_from("ab " + UNICODE_SPACES), max_size=20)
odd_number = st.floats(allow_subnormal=False) | st.integers(-(2**70), 2**70) | st.sampled_from(["NaN", "1e400", None, [], {}])
hypothesis_like = st.fixed_dictionaries({"text": odd_text | json_values, "am_score": odd_number},
                                        optional={"lm_score": odd_number, "extra": json_values})
utterance_like = st.fixed_dictionaries({"utt_id": odd_text | json_values, "hyps": st.lists(hypothesis_like, max_size=4) | json_values},
                                       optional={"ref": odd_text | json_values})
rescore_like = st.fixed_dictionaries({"utterances": st.lists(utterance_like, max_size=3) | json_values},
                                     optional={"model": odd_text | json_values, "weights": st.dictionaries(
                                         st.sampled_from(["am_weight", "lm_weight", "interp_weight", "word_penalty", "x"]),
                                         odd_number, max_size=3) | json_values})
score_like = st.fixed_dictionaries({"sentences": st.lists(odd_text, max_size=4) | json_values},
                                   optional={"per_token": json_values, "model": odd_text})


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-models")
    save_artifact(tiny_artifact(), root / "tiny")
    settings = Settings(model_dir=root, max_delay_ms=0, max_words_per_hyp=50)
    with running_server(settings) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _post_json(client: httpx.Client, path: str, body) -> httpx.Response:
    # json.dumps writes NaN/Infinity tokens, which Python's JSON parser on the server accepts
    return client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(body=rescore_like | json_values)
def test_rescore_never_answers_5xx(server_url, body):
    response = _post_json(server_url, "/v1/rescore", body)
    assert response.status_code < 500, response.text


@FUZZ
@given(body=score_like | json_values)
def test_score_never_answers_5xx(server_url, body):
    response = _post_json(server_url, "/v1/score", body)
    assert response.status_code < 500, response.text


@FUZZ
@given(constant=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]))
def test_non_finite_json_numbers_are_refused_as_422_never_5xx(server_url, constant):
    raw = '{"utterances": [{"utt_id": "u", "hyps": [{"text": "a", "am_score": X}]}]}'.replace("X", constant)
    response = server_url.post("/v1/rescore", content=raw.encode(), headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


header_name = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                      min_size=1, max_size=40)
header_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@FUZZ
@given(headers=st.lists(st.tuples(header_name, header_value), max_size=20), repeat=st.integers(0, 400))
def test_arbitrary_and_oversized_headers_never_answer_5xx(server_url, headers, repeat):
    headers = [*headers, *[(f"x-pad-{i}", "p" * 250) for i in range(repeat)]]  # up to ~100 KiB of head
    try:
        response = server_url.post("/v1/score", json={"sentences": ["a"]}, headers=headers)
    except httpx.HTTPError:  # closed on us after a 431 that httpx did not read: allowed, not a 5xx
        response = None
    if response is not None:
        assert response.status_code < 500 or response.status_code == 503, response.text
    assert server_url.get("/healthz").status_code == 200  # and the server is still there


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_kaldi_form_and_raw_bodies_never_answer_5xx(server_url, raw):
    for path in ("/v1/score/kaldi", "/v1/rescore"):
        response = server_url.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text
