"""The hand-curated class table: every WNID is the intended WordNet 3.0 noun synset."""

from __future__ import annotations

import re
from itertools import combinations

import pytest

from consis_lib.data.classes import CLASSES, PRIORITY, class_by_wnid, classes_for_profile
from consis_lib.data.sprite_styles import STYLES, available_styles, style_family
from consis_lib.data.sprites import has_sprite
from consis_lib.errors import ConsisError


def test_every_wnid_is_its_intended_noun_synset(wordnet):
    from consis_lib.wordnet import synset_of

    for c in CLASSES:
        assert re.fullmatch(r"n\d{8}", c.wnid), c
        syn = synset_of(c.wnid)
        assert syn.pos() == "n", c
        assert syn.name() == c.synset_name, (c.wnid, syn.name(), c.synset_name)
        # independent of the library: nltk's own offset lookup agrees
        assert wordnet.synset_from_pos_and_offset("n", int(c.wnid[1:])).name() == c.synset_name


def test_known_pitfalls_resolve_to_the_animal_sense(wordnet):
    by_name = {c.name: c for c in CLASSES}
    animal = wordnet.synset("animal.n.01")
    # first senses: ram -> RAM, turtle -> turtleneck, cricket -> the game, mouse is fine
    for name in ("ram", "turtle", "cricket", "mouse", "bat", "crab"):
        syn = wordnet.synset(by_name[name].synset_name)
        assert animal in syn.closure(lambda s: s.hypernyms()), name
    assert animal not in wordnet.synset(by_name["computer mouse"].synset_name).closure(lambda s: s.hypernyms())


def test_table_has_no_duplicates():
    assert len({c.wnid for c in CLASSES}) == len(CLASSES)
    assert len({c.synset_name for c in CLASSES}) == len(CLASSES)
    assert len({c.emoji for c in CLASSES}) == len(CLASSES)
    assert len(set(PRIORITY)) == len(PRIORITY)


def test_every_class_has_at_least_four_independent_styles():
    if available_styles() != STYLES:
        pytest.skip("a sprite font is not installed (make setup installs it)")
    for c in CLASSES:
        families = {style_family(s) for s in STYLES if has_sprite(s, c.emoji)}
        assert len(families) >= 4, (c.name, families)


def _distances(wordnet, classes):
    syns = [wordnet.synset(c.synset_name) for c in classes]
    return {a.name(): {b.name(): a.shortest_path_distance(b) for b in syns} for a in syns}, [
        a.shortest_path_distance(b) for a, b in combinations(syns, 2)
    ]


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_small_profiles_have_sibling_structure(wordnet, profile):
    classes = classes_for_profile(profile)
    table, pairs = _distances(wordnet, classes)
    assert 2 in pairs
    assert max(pairs) >= 12
    if profile == "default":
        assert len(classes) >= 20
        # the sibling groups named in DESIGN are all present
        names = {c.name for c in classes}
        assert {"dog", "wolf", "fox", "cat", "tiger", "car", "taxi", "ambulance", "banana", "apple", "pear"} <= names
        assert table["dog.n.01"]["wolf.n.01"] == 2
        assert table["banana.n.02"]["apple.n.01"] == 2


def test_profile_sizes_and_nesting():
    smoke, default, full = (classes_for_profile(p) for p in ("smoke", "default", "full"))
    assert len(smoke) == 8 and len(default) == 24 and len(full) == len(CLASSES)
    assert default[:8] == smoke
    assert set(full) == set(CLASSES)
    assert len(classes_for_profile("full", num_classes=30)) == 30


def test_profile_accepts_a_data_config():
    from consis_lib.config import DataConfig, get_profile

    assert classes_for_profile(get_profile("smoke").data) == classes_for_profile("smoke")
    assert len(classes_for_profile(DataConfig(profile="default", num_classes=10))) == 10
    assert len(classes_for_profile(get_profile("full").data)) == len(CLASSES)


def test_bad_profile_input_is_a_one_line_error():
    with pytest.raises(ConsisError, match="paper"):
        classes_for_profile("paper")
    with pytest.raises(ConsisError, match="num_classes"):
        classes_for_profile("default", num_classes=len(CLASSES) + 1)
    with pytest.raises(ConsisError, match="not a curated class"):
        class_by_wnid("n00000000")
    assert class_by_wnid("n02084071").name == "dog"
