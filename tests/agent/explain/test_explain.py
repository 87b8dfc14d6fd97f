import itertools
import re

import pytest

from agent.domain.movielens.film import credits
from agent.domain.movielens.loaders import ML_GENRES
from agent.explain.check import check_explanation
from agent.explain.facts import gather_facts
from agent.explain.writer import FRAMES, explain_picks, template_explanation, write_picks
from agent.types import DialogueState
from agent.understand.linking import TitleIndex
from tests.conftest import tiny_items


@pytest.fixture
def ctx(catalog):
    state = DialogueState(liked=(1,), year_min=1990, year_max=1999)
    people = {p for it in catalog.items.values() for p in credits(it)}
    return catalog, state, TitleIndex(tiny_items()), people


def facts_for(catalog, state, item_id):
    return gather_facts(catalog.get(item_id), state, catalog.items, catalog.cowatch)


def test_facts_connect_item_to_liked(ctx):
    catalog, state, _, _ = ctx
    f = facts_for(catalog, state, 7)  # Alien 3 vs liked Alien
    assert f.shared_genres == ("Action", "Horror", "Sci-Fi")
    assert ("Sigourney Weaver", "cast", catalog.get(1)) in f.shared_people
    assert f.meets_years == (1990, 1999)


def test_template_explanations_pass_the_checker_for_every_item(ctx):
    catalog, state, index, people = ctx
    for item_id in catalog.items:
        if item_id in state.liked:
            continue
        f = facts_for(catalog, state, item_id)
        text = template_explanation(f)
        assert check_explanation(text, f, state, catalog.items, index, people) == [], text


def test_template_states_the_shared_person(ctx):
    catalog, state, _, _ = ctx
    text = template_explanation(facts_for(catalog, state, 7))
    assert "Sigourney Weaver" in text and "Alien" in text
    assert "1992" in text  # the requested years, met


def test_checker_accepts_a_faithful_sentence(ctx):
    catalog, state, index, people = ctx
    f = facts_for(catalog, state, 7)
    ok = "Like Alien, it is sci-fi and horror, and Sigourney Weaver stars again."
    assert check_explanation(ok, f, state, catalog.items, index, people) == []


@pytest.mark.parametrize("text,problem", [
    ("It is a sequel to Aliens, which you will love.", "names another title"),
    ("Directed by James Cameron, it is sci-fi.", "person not credited"),
    ("Released in 1986, it is sci-fi.", "year"),
    ("A great comedy like Alien.", "Comedy"),
    ("It is sci-fi", "unfinished"),
    ('You will love "The Matrix Reloaded".', "quotes"),
    ("Movie: Alien 3 (1992) Facts: sci-fi.", "echoes"),
    ("It explores profound themes of identity, memory, grief and redemption.", "facts do not"),
])
def test_checker_rejects_untrue_or_ungrounded_text(ctx, text, problem):
    catalog, state, index, people = ctx
    f = facts_for(catalog, state, 7)
    problems = check_explanation(text, f, state, catalog.items, index, people)
    assert any(problem in p for p in problems), problems


def test_names_abbreviations_and_duplicate_titles_are_not_false_alarms():
    from agent.domain.movielens.film import film

    items = {
        1: film(1, "Michael", 1996, ("Comedy",), ("Nora Ephron",), ("John Travolta",)),
        2: film(2, "The Rock", 1996, ("Action", "Thriller"), ("Michael Bay",), ("Sean Connery",)),
        3: film(3, "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb", 1963,
                ("Sci-Fi", "War"), ("Stanley Kubrick",), ("Peter Sellers",)),
        4: film(4, "Desperate Measures", 1998, ("Crime", "Drama", "Thriller"), (), ()),
        5: film(5, "Desperate Measures", 1998, ("Crime", "Drama", "Thriller"), (), ()),
        6: film(6, "Con Air", 1997, ("Action", "Thriller"), ("Simon West",), ("Nicolas Cage",)),
    }
    index = TitleIndex(list(items.values()))
    people = {"Michael Bay", "Nora Ephron", "Stanley Kubrick", "Simon West", "John Travolta"}
    state = DialogueState(liked=(3, 5, 6))
    f = gather_facts(items[2], state, items, None)
    text = template_explanation(f)
    assert "Desperate Measures" in text or "Con Air" in text, text
    # "Michael" (in "Michael Bay") is a title too; id 4 duplicates the liked id 5.
    said = ("Like Desperate Measures and Con Air it is action and thriller. "
            "Directed by Michael Bay (1996).")
    assert check_explanation(said, f, state, items, index, people) == []
    said = "Like Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb, it is fun."
    assert "more than two sentences" not in check_explanation(said, f, state, items, index, people)


def test_template_does_not_name_the_same_liked_title_twice(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(11,))
    f = facts_for(catalog, state, 3)  # Terminator 2 shares James Cameron and genres with Aliens
    text = template_explanation(f)
    assert text.count("Aliens") == 1, text
    assert "James Cameron" in text and "Directed by James Cameron (" not in text


# --- one reply's picks written together (issue 15) ---------------------------------------
STATES = [DialogueState(liked=(1,)), DialogueState(liked=(11,)), DialogueState(liked=(1, 2)),
          DialogueState(liked=(5,), year_min=1990, year_max=1999),
          DialogueState(genres=("Sci-Fi",), year_min=1990, year_max=1999),
          DialogueState(people=("Sigourney Weaver",)),
          DialogueState(liked=(4,), moods=("dark",)), DialogueState(query="something good")]


def reply_facts(catalog, state, picks):
    return [facts_for(catalog, state, i) for i in picks]


def skeleton(sentence: str, f, state, catalog) -> str:
    """A sentence with its facts blanked out: what is left is its frame."""
    words = [f.item.title, *credits(f.item)]
    for i in state.liked:
        lk = catalog.get(i)
        words += [lk.title, *credits(lk)]
    words += list(ML_GENRES) + list(state.moods)
    for w in sorted(set(words), key=len, reverse=True):
        sentence = re.sub(re.escape(w), "_", sentence, flags=re.I)
    return re.sub(r"\d+s?|\b(an?)\b", "_", sentence).strip()


def test_three_similar_picks_get_three_frames_and_three_reasons(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(1,))  # Alien; all three picks are sci-fi horror/action
    facts = reply_facts(catalog, state, [7, 11, 12])
    written = write_picks(facts)
    frames = [fr for _, frs in written for fr in frs]
    assert len(frames) == len(set(frames)), written
    firsts = [frs[0].split(":")[0] for _, frs in written]
    assert len(set(firsts)) == 3, written  # a different kind of reason for each pick
    sentences = [(s, f) for (text, _), f in zip(written, facts)
                 for s in re.split(r"(?<=\.) ", text)]
    shapes = [skeleton(s, f, state, catalog) for s, f in sentences]
    assert len(shapes) == len(set(shapes)), shapes
    assert not any(re.search(r"Directed by [^.]+\(\d{4}\)", t) for t, _ in written)


@pytest.mark.parametrize("state", STATES, ids=range(len(STATES)))
def test_every_reply_is_true_and_never_reuses_a_frame(ctx, state):
    catalog, _, index, people = ctx
    pool = [i for i in catalog.items if i not in state.liked]
    for picks in itertools.combinations(pool, 3):
        facts = reply_facts(catalog, state, picks)
        written = write_picks(facts)
        frames = [fr for _, frs in written for fr in frs]
        assert len(frames) == len(set(frames)), written
        for (text, _), f in zip(written, facts):
            assert check_explanation(text, f, state, catalog.items, index, people) == [], text
            assert len(re.findall(r"[.!](?:\s|$)", text)) <= 2 and len(text.split()) <= 30
            for genre in ML_GENRES:  # no genre the item lacks (liked titles blanked)
                said = text
                for i in state.liked:
                    said = said.replace(catalog.get(i).title, "X")
                if genre not in f.item.values("genres"):
                    assert genre.lower() not in said.lower(), (genre, text)


def test_a_shared_director_is_named_wherever_the_pick_comes(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(11,))  # Aliens, by James Cameron
    for picks in ([3, 7, 12], [7, 3, 12], [12, 7, 3]):
        texts = explain_picks(reply_facts(catalog, state, picks))
        t2 = texts[picks.index(3)]  # Terminator 2, also James Cameron's
        assert "James Cameron" in t2 and "Aliens" in t2, t2


def test_what_is_different_is_true(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(1, 2))  # Alien (1979), Blade Runner (1982)
    f = facts_for(catalog, state, 9)  # 2001 (1968): adds Drama and Mystery
    assert f.adds_genres == ("Drama", "Mystery") and f.new_decade == 1960
    assert f.closest == catalog.get(1) or f.closest == catalog.get(2)
    f = facts_for(catalog, state, 7)  # Alien 3 is Action, Horror, Sci-Fi: Alien has them all
    assert f.adds_genres == () and f.closest == catalog.get(1)
    assert set(f.closest_genres) == {"Action", "Horror", "Sci-Fi"}


def test_cowatch_rank_counts_ties_against_the_item(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(5,))
    row = catalog.cowatch[5].toarray().ravel()
    for i in (4, 10):
        f = facts_for(catalog, state, i)
        expected = 1 + sum(1 for j, v in enumerate(row) if v >= row[i] and j not in (5, i))
        assert f.cowatch_rank is None or f.cowatch_rank[1] == expected
    texts = explain_picks(reply_facts(catalog, state, [10, 4, 6]))
    assert sum("most often watched alongside Toy Story." in t and "among" not in t
               for t in texts) <= 1, texts


def test_asked_person_and_mood_are_reasons(ctx):
    catalog, _, index, people = ctx
    state = DialogueState(people=("Sigourney Weaver",), moods=("dark",))
    f = facts_for(catalog, state, 7)
    assert f.meets_people == (("Sigourney Weaver", "cast"),)
    assert f.meets_moods == (("dark", "Horror"),)
    text = template_explanation(f)
    assert "Sigourney Weaver" in text, text
    assert check_explanation(text, f, state, catalog.items, index, people) == []


def test_a_bounded_running_time_is_said_once_and_true(ctx):
    from agent.domain.movielens import SCHEMA
    from agent.domain.schema import CatalogSchema

    catalog, _, index, people = ctx
    schema = CatalogSchema.load(SCHEMA)
    state = DialogueState(bounds=(("runtime", None, 90),))
    short = catalog.get(4).with_values(runtime=83)
    f = gather_facts(short, state, catalog.items, catalog.cowatch, schema)
    assert f.meets_bounds == (("running time", "83 min", "running time at most 90 min"),)
    text = template_explanation(f)
    assert text.count("83") == 1, text  # not "At 83 min, ... At 83 minutes, it is short."
    assert check_explanation(text, f, state, catalog.items, index, people) == []


@pytest.mark.parametrize("mood, article", [("exciting", "an"), ("dark", "a")])
def test_a_mood_takes_its_article(mood, article):
    from agent.explain.writer import _a

    assert _a(mood) == f"{article} {mood}"
    assert "{a_mood}" in " ".join(FRAMES["mood"]) and "For a {mood}" not in " ".join(
        FRAMES["mood"])


def test_writer_is_deterministic_and_single_pick_matches(ctx):
    catalog, state, _, _ = ctx
    facts = reply_facts(catalog, state, [7, 3, 12])
    assert explain_picks(facts) == explain_picks(facts)
    assert template_explanation(facts[0]) == explain_picks(facts[:1])[0]
    assert all(len(frames) >= 2 for frames in FRAMES.values())


def test_people_under_the_generic_role_get_frames_the_checker_accepts(ctx):
    """A film catalog may put ``role: people`` on its credits (neither director nor cast):
    the explanations then say who is credited, in words the facts ground."""
    import yaml

    from agent.domain.movielens import SCHEMA
    from agent.domain.schema import CatalogSchema

    data = yaml.safe_load(SCHEMA.read_text())
    for facet in data["facets"]:
        if facet.get("role") in ("director", "cast"):
            facet["role"] = "people"
    schema = CatalogSchema.from_dict(data)
    catalog, _, index, people = ctx
    for state in (DialogueState(liked=(1,)), DialogueState(people=("Sigourney Weaver",))):
        f = gather_facts(catalog.get(7), state, catalog.items, catalog.cowatch, schema)
        assert {role for _, role, _ in f.shared_people} | {r for _, r in f.meets_people} == {
            "people"}
        text = template_explanation(f)
        assert "Sigourney Weaver" in text and "credited" in text, text
        assert check_explanation(text, f, state, catalog.items, index, people) == [], text
