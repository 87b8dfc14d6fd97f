"""Writing explanations from facts: one reason per pick, a different sentence frame for
each pick of a reply (``explain_picks``), and the messages that ask the LLM to phrase
the facts instead."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from agent.explain.facts import LONG_RUNTIME, SHORT_RUNTIME, Facts, join_words, top_band


def _g(genres, most: int = 2) -> str:
    """Genres as prose: "action and sci-fi" (Sci-Fi keeps its capitals)."""
    return join_words([g if g == "Sci-Fi" else g.lower() for g in list(genres)[:most]])


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


@dataclass(frozen=True)
class _Reason:
    kind: str  # the frame family: "director", "cast", "asked", "closest", "cowatch", ...
    strength: float
    anchor: object  # what it is about (a liked item's id, a person): not repeated in a reply
    args: dict
    constraint: bool = False  # restates the request: said at most once per reply


# Sentence frames per reason kind, as format strings over the reason's ``args``. Each
# word outside the placeholders is in ``_GLUE`` or in the lines of ``Facts.lines`` for
# that fact, so ``check_explanation`` finds nothing ungrounded in them. No article or
# capital right before a genre: "A war pick" would name the film "A War".
FRAMES: dict[str, tuple[str, ...]] = {
    "director": ("{name} directed both this and {liked}.",
                 "From {name}, who also directed {liked}.",
                 "Another film by {name}, the director of {liked}.",
                 "{liked} was directed by {name}, and so was this."),
    "cast": ("{name} is in both this and {liked}.",
             "{name}, from {liked}, stars here too.",
             "{name} appears in it, as in {liked}.",
             "If you liked {name} in {liked}, this one has {name} too."),
    "people": ("{name} is credited on both this and {liked}.",
               "{name}, credited on {liked}, is credited on it too."),
    "asked_people": ("{name}, whom you asked for, is credited on it.",
                     "It is credited to {name}, as you asked."),
    "asked_director": ("{name} directed it, as you asked.",
                       "One for {name} fans: {name} directed it.",
                       "Directed by {name}, whom you asked for."),
    "asked_cast": ("It stars {name}, as you asked.",
                   "One for {name} fans, as requested.",
                   "{name}, whom you asked for, is in the cast."),
    "closest": ("It is closest to {liked}: both are {genres}.",
                "If you enjoyed {liked}, this shares its {genres}.",
                "{liked} fans should try this: it is {genres} too.",
                "Much like {liked}, it is {genres}."),
    "cowatch_rank": ("It is among the {rank} films most often watched alongside {liked}.",
                     "Of the films watched alongside {liked}, it is one of the {rank} most "
                     "often watched."),
    "cowatch_top": ("It is the film most often watched alongside {liked}.",
                    "No film is watched alongside {liked} more often than this one."),
    "cowatch_share": ("It shares viewers with {share} films you liked.",
                      "People who watched {share} films you liked watched it too."),
    "cowatch": ("People who watched {liked} often watched it too.",
                "Viewers of {liked} often watch it as well.",
                "It is often watched by people who watched {liked}."),
    "mood": ("It fits the {mood} mood you asked for.",
             "For {a_mood} mood: it is {genre}.",
             "It suits the {mood} mood: it is {genre}."),
    "genre": ("It is {genres}, as you asked.",
              "Fits your request for {genres}.",
              "As requested, it is {genres}."),
    "years": ("Released in {year}, within the years you asked for.",
              "From {year}, so it fits the years you asked for.",
              "{an_year} release, in the years you wanted."),
    "adds": ("It adds {genres}, which none of the films you liked have.",
             "Unlike the titles you liked, it is also {genres}.",
             "None of your liked films is {genres}; this one is."),
    "decade": ("It is from the {decade}s, a different decade from your liked films.",
               "Made in the {decade}s, unlike the titles you liked."),
    "runtime": ("It runs {runtime} minutes, which is {size}.",
                "At {runtime} minutes, it is {size}."),
    "country": ("Made in {country}.",
                "It was made in {country}."),
    "plain": ("Released in {year}, it is {genres}.",
              "It is {genres}, released in {year}.",
              "This one is {genres}, from {year}.",
              "For {genres}, try this one from {year}."),
    "plain_no_year": ("It is {genres}.",
                      "This one is {genres}.",
                      "Try it for {genres}."),
    # A catalog's own facets: {what} and {facts} are "colour blue and material wool".
    "asked_facets": ("As you asked: {what}.",
                     "{What}, as requested.",
                     "It matches your {what}."),
    "bound": ("At {value}, it is within your {bound}.",
              "Its {name}, {value}, fits your {bound}."),
    "facets": ("Details: {facts}.",
               "This one: {facts}.",
               "{Facts}."),
    # Co-choice in an imported catalog ({noun}: "product"), where films say "watched".
    "co_top": ("It is the {noun} most often chosen alongside {liked}.",
               "No {noun} is chosen alongside {liked} more often than this one."),
    "co_rank": ("It is among the {rank} {noun}s most often chosen alongside {liked}.",
                "Of the {noun}s chosen alongside {liked}, it is one of the {rank} most often "
                "chosen."),
    "co_share": ("People who chose {share} {noun}s you liked chose it too.",
                 "It is often chosen with {share} {noun}s you liked."),
    "co": ("People who chose {liked} often chose it too.",
           "It is often chosen by people who chose {liked}."),
    "bare": ("It suits your request.",
             "A good fit for your request.",
             "It fits what you asked for."),
}
_NEUTRAL = ("plain", "plain_no_year", "facets", "bare")
_SECONDARY_KINDS = ("adds", "decade", "years", "genre", "mood", "cowatch", "cowatch_share",
                    "runtime", "country", "bound", "co", "co_share")


def _reasons(f: Facts) -> list[_Reason]:
    """Everything true worth saying about ``f.item``, strongest first."""
    it, out = f.item, []
    for name, role in f.meets_people:
        out.append(_Reason(f"asked_{role}", 10.0, name, {"name": name}, constraint=True))
    for name, role, liked in f.shared_people:  # role: "director", "cast" or "people"
        out.append(_Reason(role, 9.0 if role == "director" else 8.0, liked.id,
                           {"name": name, "liked": liked.title}))
    if f.cowatch_rank is not None:
        liked, rank = f.cowatch_rank
        if rank == 1:
            out.append(_Reason("cowatch_top", 7.5, liked.id, {"liked": liked.title}))
        else:
            out.append(_Reason("cowatch_rank", 7.0 - rank / 10, liked.id,
                               {"liked": liked.title, "rank": top_band(rank)}))
    if f.n_liked >= 2 and len(f.cowatched_with) >= 2:
        k, n = len(f.cowatched_with), f.n_liked
        out.append(_Reason("cowatch_share", 5.0 + k / n, "share", {
            "k": k, "n": n, "share": ("both of the" if n == 2 else f"all {n} of the") if k == n
            else f"{k} of the {n}"}))
    if f.closest is not None and f.closest_genres:
        n = len(f.closest_genres)
        out.append(_Reason("closest", (6.0 if n >= 2 else 3.5) + n / 10, f.closest.id,
                           {"liked": f.closest.title, "genres": _g(f.closest_genres, 3)}))
    for liked in f.cowatched_with[:2]:
        out.append(_Reason("cowatch", 4.0, liked.id, {"liked": liked.title}))
    for mood, genre in f.meets_moods[:1]:
        out.append(_Reason("mood", 5.0, mood, {"mood": mood, "a_mood": _a(mood),
                                               "genre": _g([genre])},
                           constraint=True))
    if f.meets_genre:
        out.append(_Reason("genre", 4.5, "genre", {"genres": _g(f.meets_genre, 3)},
                           constraint=True))
    year, runtime, country = f.roles.year_of(it), it.value("runtime"), it.value("country")
    if f.meets_years and year:
        out.append(_Reason("years", 4.0, "years",
                           {"year": year, "an_year": _a(str(year)).capitalize()},
                           constraint=True))
    if f.adds_genres:
        out.append(_Reason("adds", 3.0, "adds", {"genres": _g(f.adds_genres)}))
    if f.new_decade and not f.meets_years:  # a requested decade is no news
        out.append(_Reason("decade", 2.5, "decade", {"decade": f.new_decade}))
    # A running time the user bounded is said by the bound's reason, not twice.
    if runtime and "runtime" not in f.bounded and (
            runtime <= SHORT_RUNTIME or runtime >= LONG_RUNTIME):
        out.append(_Reason("runtime", 0.8, "runtime", {
            "runtime": runtime, "size": "short" if runtime <= SHORT_RUNTIME else "long"}))
    if country and country != "United States":
        out.append(_Reason("country", 0.7, "country", {"country": country}))
    has = f.roles.genres_of(it)
    if has:  # the genres not asked for first: "it is comedy" restates the request
        genres = _g([g for g in has if g not in f.meets_genre]
                    + [g for g in has if g in f.meets_genre])
        args = {"genres": genres, "year": year}
        out.append(_Reason("plain" if year else "plain_no_year", 1.0, "plain", args))
    out += _facet_reasons(f)
    out.append(_Reason("bare", -20.0, "bare", {}))  # only when nothing else is known
    if f.noun:  # an imported catalog: co-choice in its own words
        out = [replace(r, kind=_CO.get(r.kind, r.kind), args={**r.args, "noun": f.noun})
               for r in out]
    return sorted(out, key=lambda r: -r.strength)


_CO = {"cowatch_top": "co_top", "cowatch_rank": "co_rank", "cowatch_share": "co_share",
       "cowatch": "co"}


def _pairs(pairs) -> str:
    return join_words([f"{name} {value}" for name, value in pairs])


def _facet_reasons(f: Facts) -> list[_Reason]:
    """A catalog's own facets: the values asked for, the bounds met, the item's facts."""
    out = []
    if f.meets_facets:
        what = _pairs(f.meets_facets)
        out.append(_Reason("asked_facets", 9.5, "asked_facets",
                           {"what": what, "What": what[0].upper() + what[1:]}, constraint=True))
    for name, value, bound in f.meets_bounds[:1]:
        out.append(_Reason("bound", 4.6, "bound", {"name": name, "value": value, "bound": bound},
                           constraint=True))
    if f.facet_facts:
        facts = _pairs(f.facet_facts)
        out.append(_Reason("facets", 1.0, "facets",
                           {"facts": facts, "Facts": facts[0].upper() + facts[1:]}))
    return out


def _frame(kind: str, args: dict, start: int, used: set) -> tuple[tuple[str, int], str]:
    """The first frame of ``kind`` from ``start`` (rotating) that ``used`` lacks; the
    ``start`` one when all are used."""
    frames = FRAMES[kind]
    order = [(start + k) % len(frames) for k in range(len(frames))]
    k = next((k for k in order if (kind, k) not in used), order[0])
    used.add((kind, k))
    text = frames[k].format(**args)
    return (kind, k), text[0].upper() + text[1:]


def explain_picks(facts_list) -> list[str]:
    """One or two short sentences per pick of one reply, written together: each pick
    gets its strongest reason not already given for an earlier pick (a different kind
    or a different liked title), and no two picks share a sentence frame. Only facts
    from ``Facts`` are stated, so every text passes ``check_explanation``.
    Deterministic: the frame rotates with the pick's position and item id."""
    return [text for text, _ in write_picks(facts_list)]


def write_picks(facts_list) -> list[tuple[str, tuple[str, ...]]]:
    """``explain_picks`` with the frame ids each text uses (for tests and measurement)."""
    used_frames: set = set()
    kinds, anchors, said = [], set(), set()  # said: constraint kinds already stated
    out = []
    for pos, f in enumerate(facts_list):
        reasons = _reasons(f)

        def score(r: _Reason) -> float:
            s = r.strength - (8.0 if _spent(r.kind, used_frames) else 0.0)
            if r.kind in _NEUTRAL:  # describes the item only; its frames still rotate
                return s
            if r.kind in kinds:
                s -= 3.0
            if r.anchor in anchors:
                s -= 2.5
            if r.constraint and r.kind in said:
                s -= 5.0
            return s

        first = max(reasons, key=score)  # ties: the earlier (stronger) reason
        start = pos + f.item.id
        frames, sentences = [], []
        key, text = _frame(first.kind, first.args, start, used_frames)
        frames.append(key), sentences.append(text)
        # A second sentence: what sets it apart, or a constraint met if no pick said so yet.
        named = {v for v in first.args.values() if isinstance(v, str)}
        second = [r for r in reasons if r.kind in _SECONDARY_KINDS and r.kind != first.kind
                  and r.kind.split("_")[0] != first.kind.split("_")[0]
                  and not (r.constraint and (r.kind in said or first.constraint))
                  and not (r.args.get("liked") in named)
                  and not (first.kind in _NEUTRAL and r.kind in ("years", "adds", "decade"))
                  and not _spent(r.kind, used_frames)]
        second.sort(key=lambda r: (r.kind in kinds, -_SECOND_ORDER.get(r.kind, 0)))
        if second:
            key2, text2 = _frame(second[0].kind, second[0].args, start + 1, used_frames)
            if _repeats(text + " " + text2):  # the checker's 4-gram rule: say less instead
                used_frames.discard(key2)
                second = []
            else:
                frames.append(key2), sentences.append(text2)
        if second:
            kinds.append(second[0].kind)
            if second[0].constraint:
                said.add(second[0].kind)
        kinds.append(first.kind)
        anchors.add(first.anchor)
        if first.constraint:
            said.add(first.kind)
        out.append((" ".join(sentences), tuple(f"{k}:{n}" for k, n in frames)))
    return out


def _spent(kind: str, used: set) -> bool:
    """Every frame of ``kind`` is used in this reply already."""
    return all((kind, k) in used for k in range(len(FRAMES[kind])))


def _repeats(text: str) -> bool:
    words = re.findall(r"[a-z0-9']+", text.lower())
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return len(grams) != len(set(grams))


# Which second sentence is most worth its words: what is different first.
_SECOND_ORDER = {"adds": 9, "decade": 8, "years": 7, "genre": 6, "mood": 6, "bound": 6,
                 "cowatch_share": 5, "co_share": 5, "cowatch": 4, "co": 4, "country": 3,
                 "runtime": 2}


def template_explanation(f: Facts) -> str:
    """One or two sentences built only from ``f``; true by construction."""
    return explain_picks([f])[0]


def explanation_messages(f: Facts) -> list[dict]:
    from prompts import load_prompt

    if f.noun:  # an imported catalog: its own noun, no film words
        return [{"role": "system", "content": load_prompt("explain_catalog_system").render(
                    noun=f.noun)},
                {"role": "user", "content": load_prompt("explain_catalog_user").render(
                    Noun=f.noun.capitalize(), title=f.item.label,
                    facts="\n".join("- " + line for line in f.lines()))}]
    return [{"role": "system", "content": load_prompt("explain_system").text},
            {"role": "user", "content": load_prompt("explain_user").render(
                title=f.item.label, facts="\n".join("- " + line for line in f.lines()))}]
