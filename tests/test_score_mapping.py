import pytest

from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET, parse_score_mapping
from rescorer.nbest import NbestError


def test_mappings_parse_weights_signs_and_round_trip_to_text():
    mapping = parse_score_mapping("am=0.6*decoder+0.4*ctc,lm=lm")
    assert mapping == LIBRISPEECH_ESPNET
    assert parse_score_mapping(mapping.to_text()) == mapping
    assert parse_score_mapping("am=decoder-0.5*ctc").am == (("decoder", 1.0), ("ctc", -0.5))


@pytest.mark.parametrize("spec", ["lm=lm", "am=0.6 decoder", "am=0.6*", "xx=1"])
def test_malformed_mappings_are_rejected_with_the_expected_form(spec):
    with pytest.raises(NbestError, match="score mapping"):
        parse_score_mapping(spec)
