import gzip
import io
import json

import pytest

from rescorer.formats.jsonl import read_jsonl, write_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.nbest import NbestError
from tests.nbest_fixtures import tiny_utterances


def _write(tmp_path, lines, name="n.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_write_then_read_gives_the_same_utterances_plain_and_gzip(tmp_path):
    buffer = io.StringIO()
    write_jsonl(tiny_utterances(), buffer)
    (tmp_path / "a.jsonl").write_text(buffer.getvalue())
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(buffer.getvalue())
    assert read_jsonl(tmp_path / "a.jsonl") == tiny_utterances()
    assert read_jsonl(tmp_path / "a.jsonl.gz") == tiny_utterances()


def test_named_scores_are_mapped_and_other_fields_carried_through(tmp_path):
    record = {"utt_id": "x", "speaker": "s1", "ref": "A B", "hyps": [
        {"rank": 1, "text": "A  B", "decoder": -1.0, "ctc": -2.0, "lm": -5.0, "tokens": "▁A ▁B"}]}
    utt = read_jsonl(_write(tmp_path, [json.dumps(record)]), LIBRISPEECH_ESPNET)[0]
    hyp = utt.hyps[0]
    assert hyp.text == "A B" and hyp.am_score == pytest.approx(0.6 * -1.0 + 0.4 * -2.0) and hyp.lm_score == -5.0
    assert hyp.scores == {"decoder": -1.0, "ctc": -2.0, "lm": -5.0}
    assert hyp.extra == {"rank": 1, "tokens": "▁A ▁B"} and utt.extra == {"speaker": "s1"}


def test_an_empty_hypothesis_is_allowed(tmp_path):
    path = _write(tmp_path, ['{"utt_id": "u", "hyps": [{"text": "", "am_score": -1}]}'])
    assert read_jsonl(path)[0].hyps[0].words == []


@pytest.mark.parametrize("line, message", [
    ('{"utt_id": "u", "hyps": []}', "n.jsonl:1: utterance 'u' has no hypotheses"),
    ('{"utt_id": "u", "hyps": [{"text": "a", "am_score": NaN}]}', "NaN is not a number JSON allows"),
    ('{"utt_id": "u", "hyps": [{"text": "a", "am_score": -1, "lm_score": Infinity}]}', "Infinity is not a number JSON allows"),
    ('{"utt_id": "u", "hyps": [{"text": "a"}]}', "no 'am_score'.*give a score mapping"),
    ('{"utt_id": "u", "hyps": [{"text": 3, "am_score": -1}]}', "hypothesis 1: 'text' must be a string"),
    ('{"hyps": []}', "'utt_id' must be a non-empty string"),
    ('{"utt_id": "u", "hyps": [', "n.jsonl:1: not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"utt_id": "u", "hyps": [{"text": "a", "am_score": -1, "lm_score": 12.5}]}', "lm_score 12.5 is positive.*a cost"),
])
def test_malformed_lines_are_errors_naming_file_line_and_expectation(tmp_path, line, message):
    with pytest.raises(NbestError, match=message):
        read_jsonl(_write(tmp_path, [line]))


def test_a_repeated_utterance_id_is_an_error(tmp_path):
    line = '{"utt_id": "u", "hyps": [{"text": "a", "am_score": -1}]}'
    with pytest.raises(NbestError, match=r"n.jsonl:2: utterance 'u' appears twice"):
        read_jsonl(_write(tmp_path, [line, line]))


def test_a_mapping_that_needs_a_missing_score_says_which(tmp_path):
    line = '{"utt_id": "u", "hyps": [{"text": "a", "decoder": -1}]}'
    with pytest.raises(NbestError, match=r"needs \['ctc', 'lm'\]"):
        read_jsonl(_write(tmp_path, [line]), LIBRISPEECH_ESPNET)
