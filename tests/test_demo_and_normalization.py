from rescorer.formats.jsonl import read_jsonl
from training.demo_corpus import TOPICS, generate_sentences
from training.demo_nbest import write_demo_nbest
from training.text_normalization import wikitext_to_librispeech


def test_demo_corpus_is_deterministic_and_grammatical():
    assert generate_sentences(50, seed=3) == generate_sentences(50, seed=3)
    assert generate_sentences(50, seed=3) != generate_sentences(50, seed=4)
    for sentence in generate_sentences(300, seed=1):
        words = sentence.split()
        if words[0] in ("these", "those", "many", "two", "three", "some"):
            assert not words[2].endswith("s") or words[2].endswith("ss")  # plural subject, plural verb


def test_every_verb_of_the_demo_grammar_has_its_plural_form():
    singular = {v for topic in TOPICS.values() for v in topic[2]}
    plural = {"bake", "cook", "serve", "taste", "plant", "water", "grow", "pick", "write", "sign", "read",
              "review", "repair", "tie", "check", "carry"}
    seen = set()
    for sentence in generate_sentences(3000, seed=2):
        words = sentence.split()
        verb = words[2]  # determiner, subject, verb
        if verb in singular | plural:
            seen.add(verb)
    assert seen == singular | plural  # "ties" -> "tie", never "ty"


def test_demo_nbest_lists_hold_the_reference_and_are_sorted_by_score(tmp_path):
    paths = write_demo_nbest(tmp_path, n=5, utterances=40)
    for path in paths.values():
        utterances = read_jsonl(path)
        assert len(utterances) == 40
        for utt in utterances:
            texts = [h.text for h in utt.hyps]
            assert utt.ref in texts and len(set(texts)) == len(texts)
            scores = [h.am_score for h in utt.hyps]
            assert scores == sorted(scores, reverse=True)
    assert write_demo_nbest(tmp_path / "again", n=5, utterances=40)["dev"].read_text() == paths["dev"].read_text()


def test_wikitext_normalization_follows_the_librispeech_conventions():
    lines = [" = Heading = \n", "\n",
             " The game 's role @-@ playing , O 'Brien do n't pay 1 @,@ 000 soldiers ' wages . Was it <unk> ? Yes !\n"]
    assert list(wikitext_to_librispeech(lines)) == [
        "THE GAME'S ROLE PLAYING O'BRIEN DON'T PAY 1000 SOLDIERS WAGES", "WAS IT <unk>", "YES"]
