"""Scripted multi-turn dialogues: the state after each turn, constraints respected,
no item shown twice, and feedback that changes the next answer."""

from agent.interfaces.sessions import apply_feedback
from agent.llm.fake import FakeBackend
from agent.recommender import CLARIFY
from agent.understand.state import satisfies
from tests.agent.turn.test_recommender import make


class Dialogue:
    def __init__(self, catalog):
        self.catalog = catalog
        self.rec = make(catalog, FakeBackend())
        self.state = None
        self.seen: list[int] = []

    def say(self, message):
        reply = self.rec.turn(message, self.state)
        ids = [r.item.id for r in reply.recommendations]
        assert not set(ids) & set(self.seen), f"repeated {set(ids) & set(self.seen)}"
        # Every pick meets every hard constraint of the new state, except loosened ones:
        # those come after all that fit, and only when the reply says what was let go.
        state = reply.state.with_changes(shown=())
        fit = [satisfies(self.catalog.get(i), state) for i in ids]
        assert fit == sorted(fit, reverse=True), "a loosened pick before one that fits"
        if not all(fit):
            assert "so these are" in reply.text, reply.text
        self.seen += ids
        self.state = reply.state
        return reply, [i for i, ok in zip(ids, fit) if ok]  # the picks that fit


def years(catalog, ids):
    return [catalog.get(i).value("year") for i in ids]


def test_constraints_accumulate_turn_by_turn(catalog):
    d = Dialogue(catalog)
    _, ids = d.say("I loved Alien")
    assert d.state.liked == (1,) and ids
    _, ids = d.say("something from the 90s")
    assert (d.state.year_min, d.state.year_max) == (1990, 1999)
    assert all(1990 <= y <= 1999 for y in years(catalog, ids))
    _, ids = d.say("no horror")
    assert d.state.excluded_genres == ("Horror",) and d.state.liked == (1,)
    assert all("Horror" not in catalog.get(i).values("genres") for i in ids)


def test_more_like_the_second_one_likes_that_pick(catalog):
    d = Dialogue(catalog)
    _, first = d.say("sci-fi please")
    d.say("more like the second one")
    assert d.state.liked == (first[1],)


def test_not_that_one_dislikes_the_first_pick_and_it_never_returns(catalog):
    d = Dialogue(catalog)
    _, first = d.say("a thriller")
    reply, ids = d.say("not that one")
    assert d.state.disliked == (first[0],) and first[0] not in ids


def test_something_older_moves_before_the_last_picks(catalog):
    d = Dialogue(catalog)
    _, first = d.say("sci-fi please")
    _, ids = d.say("something older")
    assert d.state.year_max == min(years(catalog, first)) - 1 and d.state.year_min is None
    assert ids and all(y < min(years(catalog, first)) for y in years(catalog, ids))


def test_something_newer_moves_after_the_last_picks(catalog):
    d = Dialogue(catalog)
    _, first = d.say("sci-fi from the 70s or 80s")
    _, ids = d.say("something newer")
    assert d.state.year_min == max(years(catalog, first)) + 1
    assert all(y > max(years(catalog, first)) for y in years(catalog, ids))


def test_any_decade_relaxes_an_impossible_request(catalog):
    d = Dialogue(catalog)
    # The twelve films' oldest horror is Alien (1979): even 50 years around the 1910s
    # (the widest step) leaves nothing. (The 1930s now widen to it, said as such.)
    reply, ids = d.say("a horror movie from the 1910s")
    assert ids == [] and "relaxing" in reply.text
    _, ids = d.say("any decade is fine")
    assert d.state.year_min is None and d.state.year_max is None and d.state.genres == ("Horror",)
    assert ids and all("Horror" in catalog.get(i).values("genres") for i in ids)


def test_any_genre_drops_genre_constraints(catalog):
    d = Dialogue(catalog)
    d.say("a comedy, no sci-fi")
    d.say("any genre is ok")
    assert d.state.genres == () and d.state.excluded_genres == ()


def test_a_vague_opening_gets_one_question_then_answers(catalog):
    d = Dialogue(catalog)
    reply, ids = d.say("hi there")
    assert reply.text == CLARIFY and ids == []
    _, ids = d.say("a comedy")
    assert ids and all("Comedy" in catalog.get(i).values("genres") for i in ids)


def test_a_disliked_title_is_remembered_and_excluded(catalog):
    d = Dialogue(catalog)
    d.say("I loved Alien but hated Aliens")
    assert d.state.liked == (1,) and d.state.disliked == (11,)
    _, ids = d.say("more sci-fi")
    assert 11 not in ids and d.state.disliked == (11,)


def test_changing_your_mind_moves_an_item_from_liked_to_disliked(catalog):
    d = Dialogue(catalog)
    d.say("I loved Alien 3")
    d.say("actually I didn't like Alien 3")
    assert d.state.liked == () and d.state.disliked == (7,)


def test_asking_for_hidden_gems_is_kept_across_turns(catalog):
    d = Dialogue(catalog)
    d.say("some hidden gems, sci-fi")
    d.say("from the 90s")
    assert d.state.tail_boost == 0.7


def test_a_dislike_from_feedback_changes_the_next_recommendations(catalog, tmp_path):
    """With the agent's real retriever (Chroma, hashed embeddings): disliking a pick
    pushes down what resembles it, so the next answer differs from the one without."""
    import chromadb
    from chromadb.config import Settings

    from agent.rank.verbalizer import VerbalizerRanker
    from agent.recommender import Recommender
    from agent.retrieve.index import build_index, open_collection
    from agent.retrieve.sources import HybridRetriever
    from agent.understand.linking import TitleIndex
    from tests.conftest import tiny_items
    from tests.agent.retrieve.test_index import HashEmbedder

    client = chromadb.PersistentClient(path=str(tmp_path / "c"),
                                       settings=Settings(anonymized_telemetry=False))
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    rec = Recommender(catalog, TitleIndex(tiny_items()),
                      HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog),
                      VerbalizerRanker(FakeBackend(), catalog, n_llm=4, weight=0.0), None,
                      n_candidates=6, top_k=3)
    first = rec.turn("some sci-fi", None)
    picked = first.recommendations[0].item.id
    plain = [r.item.id for r in rec.turn("more", first.state).recommendations]
    disliked = apply_feedback(first.state, picked, "dislike")
    changed = [r.item.id for r in rec.turn("more", disliked).recommendations]
    assert picked not in plain + changed
    assert plain != changed


def test_five_turns_never_repeat_an_item(catalog):
    d = Dialogue(catalog)
    d.say("I loved Alien")
    for _ in range(4):
        d.say("more")  # Dialogue.say asserts no repeats
    assert len(d.seen) == len(set(d.seen))
