from agent.explain.facts import gather_facts
from agent.types import DialogueState
from eval.explanations import personal, requests, score_writer, varied


def facts(catalog, state, ids):
    return [gather_facts(catalog.get(i), state, catalog.items, catalog.cowatch) for i in ids]


def test_varied_catches_a_shared_frame_and_a_shared_4_gram(catalog):
    f = facts(catalog, DialogueState(liked=(1,)), [7, 11])
    assert varied(["Alien 3 is horror.", "Aliens shares viewers with yours."], f)
    assert not varied(["It is action, released in 1992.", "It is action, released in 1986."], f)
    assert not varied(["A fine film to watch tonight.", "Another fine film to watch tonight."], f)


def test_personal_needs_a_fact_about_this_user(catalog):
    state = DialogueState(liked=(1,), genres=("Horror",))
    f = facts(catalog, state, [7])[0]
    assert personal("Like Alien, it has aliens.", f, state, catalog.items)
    assert personal("It is horror, as asked.", f, state, catalog.items)
    assert not personal("It is a film worth a look.", f, state, catalog.items)


def test_score_writer_counts(catalog):
    state = DialogueState(liked=(1,))
    f = facts(catalog, state, [7, 11])
    turns = [(["Like Alien, it is good.", "A fine film."], f, state, [True, False], 2.0)]
    s = score_writer(turns, catalog.items)
    assert s["check_pass_rate"] == 0.5 and s["personal_rate"] == 0.5
    assert s["seconds_per_turn"] == 2.0 and s["turns"] == 1 and s["explanations"] == 2


def test_requests_are_seeded(catalog):
    assert requests(catalog, 5, seed=1) == requests(catalog, 5, seed=1)
    assert len(requests(catalog, 5)) == 5
