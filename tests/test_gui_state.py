"""The explorer's state, its one validator and its deltas (Qt-free)."""

import numpy as np
import pytest

from pyce_gui import presets, state
from pyce_gui.model import ExplorerModel
from pyce_gui.state import Change


def test_every_field_has_a_kind_of_change_and_the_kinds_are_ordered():
    assert set(state.FIELD_CHANGES) == set(state.FIELDS)
    assert sorted([Change.BATCH, Change.STRUCTURE, Change.VALUES]) == [
        Change.STRUCTURE,
        Change.VALUES,
        Change.BATCH,
    ]


def test_a_delta_keeps_only_the_changed_elements_and_restores_exactly():
    m = ExplorerModel()
    m.load_logits(np.random.default_rng(0).normal(size=10_000))
    before = m.state
    m.set_logit(17, 0.1 + 0.2)
    after = m.state
    d = state.delta(before, after)
    assert set(d.fields) == {"logits", "note"} or set(d.fields) == {"logits"}
    assert d.nbytes < 64  # one index and two numbers
    assert np.array_equal(d.apply(after, forward=False).logits, before.logits)
    assert np.array_equal(d.apply(before, forward=True).logits, after.logits)
    assert state.changes_between(before, after) == {Change.VALUES}
    # Arrays of a state are shared, so nobody may write to them.
    with pytest.raises(ValueError):
        after.logits[0] = 1.0


def test_a_change_of_size_keeps_both_arrays_whole():
    m = ExplorerModel()
    m.set_state(presets.get("worked-1"))
    before = m.state
    m.set_num_classes(5)
    d = state.delta(before, m.state)
    assert d.fields["logits"][0] is before.logits and d.fields["logits"][1] is m.state.logits
    assert state.changes_between(before, m.state) >= {Change.STRUCTURE, Change.VALUES}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({}, "'logits' is missing"),
        ({"logits": "abc"}, "logits must be a list of numbers"),
        ({"logits": [1, 2], "labels": ["a"]}, "2 logits need 2 labels, got 1"),
        ({"logits": [1, 2], "target": 2}, r"target must be a class in \[0, 2\), got 2"),
        ({"logits": [1, 2], "temperature": 0}, r"temperature must be in \[0.01, 100\], got 0"),
        ({"logits": [1, 2], "label_smoothing": 1.5}, r"label_smoothing must be in \[0, 1\], got 1.5"),
        ({"logits": [1, 2], "soft_target": [0, 0]}, "not all zero"),
        ({"logits": [1, 2], "teacher": [1, 2, 3]}, "teacher needs 2 numbers"),
        ({"logits": [1, 2], "focal_gamma": -1}, r"focal_gamma must be in \[0, 10\]"),
        ({"logits": [1, 2], "class_weights": [1, -1]}, "class_weights must be >= 0"),
    ],
)
def test_the_one_validator_names_the_bad_value(bad, message):
    with pytest.raises(ValueError, match=message):
        state.from_dict(bad)


def test_presets_and_states_go_through_the_validator():
    for name in presets.names():
        s = state.from_dict(presets.get(name))
        assert s.n_classes == len(s.labels)
    m = ExplorerModel()
    m.set_state(presets.get("worked-2"))
    assert state.to_dict(state.from_dict(m.get_state())) == m.get_state()
