"""Explanations grounded in catalog facts, checked before they are shown.

Facts connect a recommended item to what this user said: genres shared with
liked items, the liked title it resembles most, a director or cast member in
common, co-watching, the constraints it meets and what sets it apart. The LLM
may phrase them; every title, person, year and genre its text names is checked
against the catalog, and any text that fails is replaced by sentences built from
the facts directly (``explain_picks``: one reason per pick, no two picks of a
reply in the same sentence frame).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.datasets import ML_GENRES
from agent.enrich import title_key
from agent.state import GENRE_WORDS
from agent.types import DialogueState, Item

MAX_WORDS = 60
EXPLAIN_PROMPTS = ("explain_system", "explain_user")
COWATCH_TOP = 20  # "among the N films most often watched alongside X" only for N <= this
SHORT_RUNTIME, LONG_RUNTIME = 90, 150  # minutes


@dataclass(frozen=True)
class Facts:
    """What is true of ``item`` in relation to this user's state."""

    item: Item
    shared_genres: tuple[str, ...]
    genre_sources: tuple[Item, ...]  # liked items sharing those genres
    shared_people: tuple[tuple[str, str, Item], ...]  # (name, "director"|"cast", liked item)
    cowatched_with: tuple[Item, ...]
    meets_genre: tuple[str, ...]
    meets_years: tuple[int | None, int | None] | None
    # The liked item it resembles most (shared genres + people + co-watching), and the
    # genres the two share.
    closest: Item | None = None
    closest_genres: tuple[str, ...] = ()
    # Co-watching strength: its rank among the items most co-watched with a liked item
    # (1 = the most), and how many of the ``n_liked`` liked items it is co-watched with.
    cowatch_rank: tuple[Item, int] | None = None
    n_liked: int = 0
    # What sets it apart: genres none of the liked items has; its decade when no liked
    # item is from that decade.
    adds_genres: tuple[str, ...] = ()
    new_decade: int | None = None
    meets_people: tuple[tuple[str, str], ...] = ()  # (name, "director"|"cast") asked for
    meets_moods: tuple[tuple[str, str], ...] = ()  # (mood, a genre of the item in its group)

    def lines(self) -> list[str]:
        """The facts as short lines for the explanation prompt (and the checker's
        grounding: a word the lines use is a word an explanation may use)."""
        it = self.item
        out = [f"{it.title} came out in {it.year}." if it.year else f"{it.title}."]
        if it.genres:
            out.append(f"Genres: {', '.join(it.genres)}.")
        if it.director:
            out.append(f"Directed by {', '.join(it.director)}.")
        for name, role, liked in self.shared_people:
            verb = "directed" if role == "director" else "appears in"
            out.append(f"{name} also {verb} {liked.title}, which the user liked.")
        for name, role in self.meets_people:
            out.append(f"{name}, whom the user asked for, is credited on it "
                       f"({'director' if role == 'director' else 'cast'}).")
        if self.closest is not None and self.closest_genres:
            out.append(f"Of the liked titles it is closest to {self.closest.title}: it shares "
                       f"{_join(self.closest_genres)} with it.")
        if self.shared_genres:
            out.append(f"Like {_join([i.title for i in self.genre_sources])}, it is "
                       f"{_join(self.shared_genres)}.")
        if self.cowatched_with:
            out.append(f"People who watched {_join([i.title for i in self.cowatched_with])} "
                       "often watched it too.")
            if self.n_liked >= 2 and len(self.cowatched_with) >= 2:
                out.append(f"{len(self.cowatched_with)} of the {self.n_liked} liked titles "
                           "share viewers with it"
                           + (" (all of them, both)." if len(self.cowatched_with) == self.n_liked
                              else "."))
        if self.cowatch_rank is not None:
            liked, rank = self.cowatch_rank
            out.append(f"It is the film most often watched alongside {liked.title}." if rank == 1
                       else f"It is among the {_top(rank)} films most often watched alongside "
                            f"{liked.title}.")
        if self.adds_genres:
            out.append(f"It adds {_join(self.adds_genres)}, which none of the liked titles "
                       f"have: unlike them, it is {_join(self.adds_genres)}.")
        if self.new_decade:
            out.append(f"It is from the {self.new_decade}s, a different decade from the "
                       "liked titles.")
        if it.runtime:
            size = (", which is short" if it.runtime <= SHORT_RUNTIME else
                    ", which is long" if it.runtime >= LONG_RUNTIME else "")
            out.append(f"It runs {it.runtime} minutes{size}.")
        if it.country:
            out.append(f"Made in {it.country}.")
        if self.meets_years:
            out.append(f"It fits the requested years ({_years(self.meets_years)}).")
        if self.meets_genre:
            out.append(f"It is {_join(self.meets_genre)}, as requested.")
        for mood, genre in self.meets_moods:
            out.append(f"It fits the {mood} mood the user asked for: it is {genre}.")
        return out


def _top(rank: int) -> int:
    """A round "top N" that ``rank`` is within: 2 -> 5, 7 -> 10."""
    return next(n for n in (5, 10, 20, 50, rank) if rank <= n)


def _join(words) -> str:
    words = list(words)
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _years(bounds) -> str:
    lo, hi = bounds
    if lo is not None and hi is not None:
        return str(lo) if lo == hi else f"{lo}-{hi}"
    return f"{lo} or later" if lo is not None else f"{hi} or earlier"


def _cowatch_value(cowatch, a: int, b: int) -> float:
    if cowatch is None:
        return 0.0
    try:
        return float(cowatch[a, b])
    except (IndexError, ValueError):
        return 0.0


def _cowatch_rank(cowatch, liked_id: int, item_id: int) -> int | None:
    """1 + how many other items are co-watched with ``liked_id`` at least as much as
    ``item_id`` is (ties count against it, so "the most" is never shared)."""
    value = _cowatch_value(cowatch, liked_id, item_id)
    if value <= 0:
        return None
    row = cowatch[liked_id]
    if hasattr(row, "indices"):  # a scipy sparse row: only its stored entries
        cols, vals = row.indices, row.data
        return 1 + sum(1 for c, v in zip(cols.tolist(), vals.tolist())
                       if v >= value and c not in (liked_id, item_id))
    vals = list(getattr(row, "tolist", lambda: row)())
    vals = vals[0] if vals and isinstance(vals[0], list) else vals
    return 1 + sum(1 for c, v in enumerate(vals) if v >= value and c not in (liked_id, item_id))


def gather_facts(item: Item, state: DialogueState, items: dict[int, Item], cowatch) -> Facts:
    liked = [items[i] for i in state.liked if i in items]
    shared, sources = [], []
    for lk in liked:
        common = [g for g in item.genres if g in lk.genres]
        if common:
            sources.append(lk)
            shared += [g for g in common if g not in shared]
    people = []
    for lk in liked:
        people += [(n, "director", lk) for n in item.director if n in lk.director]
        people += [(n, "cast", lk) for n in item.cast if n in lk.cast]
    cow = [lk for lk in liked if _cowatch_value(cowatch, lk.id, item.id) > 0]
    years = None
    if state.year_min is not None or state.year_max is not None:
        years = (state.year_min, state.year_max)

    def closeness(lk: Item) -> float:
        genres = sum(g in lk.genres for g in item.genres)
        persons = sum(p[2].id == lk.id for p in people)
        co = _cowatch_value(cowatch, lk.id, item.id)
        return genres + 2 * persons + (1 + co if co > 0 else 0)

    ranked = sorted((lk for lk in liked if closeness(lk) > 0), key=closeness, reverse=True)
    closest = ranked[0] if ranked else None
    closest_genres = tuple(g for g in item.genres if closest and g in closest.genres)
    rank = None
    for lk in cow:
        r = _cowatch_rank(cowatch, lk.id, item.id)
        if r is not None and r <= COWATCH_TOP and (rank is None or r < rank[1]):
            rank = (lk, r)
    liked_genres = {g for lk in liked for g in lk.genres}
    adds = tuple(g for g in item.genres if liked and g not in liked_genres)
    decades = {lk.year // 10 * 10 for lk in liked if lk.year}
    new_decade = (item.year // 10 * 10 if item.year and decades
                  and item.year // 10 * 10 not in decades else None)
    credits = [(n, "director") for n in item.director] + [(n, "cast") for n in item.cast]
    asked = tuple(dict.fromkeys((n, r) for n, r in credits if n in getattr(state, "people", ())))
    return Facts(item, tuple(shared), tuple(sources), tuple(people[:2]), tuple(cow),
                 tuple(g for g in state.genres if g in item.genres), years,
                 closest=closest, closest_genres=closest_genres, cowatch_rank=rank,
                 n_liked=len(liked), adds_genres=adds, new_decade=new_decade,
                 meets_people=asked[:2], meets_moods=_moods_met(item, state))


def _moods_met(item: Item, state: DialogueState) -> tuple[tuple[str, str], ...]:
    names = getattr(state, "moods", ())
    if not names:
        return ()
    from agent.vocabulary import load_vocabulary

    moods = load_vocabulary().moods
    out = []
    for name in names:
        genre = next((g for g in item.genres if name in moods and g in moods[name].any_genres),
                     None)
        if genre:
            out.append((name, genre))
    return tuple(out)


# --- writing: one reason per pick, a different sentence frame for each ------------------
def _g(genres, most: int = 2) -> str:
    """Genres as prose: "action and sci-fi" (Sci-Fi keeps its capitals)."""
    return _join([g if g == "Sci-Fi" else g.lower() for g in list(genres)[:most]])


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
             "For a {mood} mood: it is {genre}.",
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
    "bare": ("It suits your request.",
             "A good fit for your request.",
             "It fits what you asked for."),
}
_NEUTRAL = ("plain", "plain_no_year", "bare")
_SECONDARY_KINDS = ("adds", "decade", "years", "genre", "mood", "cowatch", "cowatch_share",
                    "runtime", "country")


def _reasons(f: Facts) -> list[_Reason]:
    """Everything true worth saying about ``f.item``, strongest first."""
    it, out = f.item, []
    for name, role in f.meets_people:
        out.append(_Reason(f"asked_{role}", 10.0, name, {"name": name}, constraint=True))
    for name, role, liked in f.shared_people:
        kind = "director" if role == "director" else "cast"
        out.append(_Reason(kind, 9.0 if kind == "director" else 8.0, liked.id,
                           {"name": name, "liked": liked.title}))
    if f.cowatch_rank is not None:
        liked, rank = f.cowatch_rank
        if rank == 1:
            out.append(_Reason("cowatch_top", 7.5, liked.id, {"liked": liked.title}))
        else:
            out.append(_Reason("cowatch_rank", 7.0 - rank / 10, liked.id,
                               {"liked": liked.title, "rank": _top(rank)}))
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
        out.append(_Reason("mood", 5.0, mood, {"mood": mood, "genre": _g([genre])},
                           constraint=True))
    if f.meets_genre:
        out.append(_Reason("genre", 4.5, "genre", {"genres": _g(f.meets_genre, 3)},
                           constraint=True))
    if f.meets_years and it.year:
        out.append(_Reason("years", 4.0, "years",
                           {"year": it.year, "an_year": _a(str(it.year)).capitalize()},
                           constraint=True))
    if f.adds_genres:
        out.append(_Reason("adds", 3.0, "adds", {"genres": _g(f.adds_genres)}))
    if f.new_decade and not f.meets_years:  # a requested decade is no news
        out.append(_Reason("decade", 2.5, "decade", {"decade": f.new_decade}))
    if it.runtime and (it.runtime <= SHORT_RUNTIME or it.runtime >= LONG_RUNTIME):
        out.append(_Reason("runtime", 0.8, "runtime", {
            "runtime": it.runtime, "size": "short" if it.runtime <= SHORT_RUNTIME else "long"}))
    if it.country and it.country != "United States":
        out.append(_Reason("country", 0.7, "country", {"country": it.country}))
    if it.genres:  # the genres not asked for first: "it is comedy" restates the request
        genres = _g([g for g in it.genres if g not in f.meets_genre]
                    + [g for g in it.genres if g in f.meets_genre])
        args = {"genres": genres, "year": it.year}
        out.append(_Reason("plain" if it.year else "plain_no_year", 1.0, "plain", args))
    out.append(_Reason("bare", -20.0, "bare", {}))  # only when nothing else is known
    return sorted(out, key=lambda r: -r.strength)


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
_SECOND_ORDER = {"adds": 9, "decade": 8, "years": 7, "genre": 6, "mood": 6, "cowatch_share": 5,
                 "cowatch": 4, "country": 3, "runtime": 2}


def template_explanation(f: Facts) -> str:
    """One or two sentences built only from ``f``; true by construction."""
    return explain_picks([f])[0]


# --- checking free text -------------------------------------------------------
_CAPITAL_RUN = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:of|the|and|de|von|van|la|le)?\s*[A-Z][\w'’.-]*)+")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_QUOTED = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")


def check_explanation(text: str, f: Facts, state: DialogueState, items: dict[int, Item],
                      title_index, known_people: set[str], partial: bool = False) -> list[str]:
    """Problems with ``text`` as an explanation of ``f.item``; empty means it may be shown.

    Checked: form (length, finished, at most two sentences, no prompt echo, no
    repeats, few words the facts do not support); every catalog title it names
    is the item or a liked item, with the right year; quoted text is such a
    title; every known person is credited on the item or a liked item; every
    year or decade fits the item, a liked item or the request; every genre word
    is a genre of the item. ``partial``: ``text`` is the start of a draft still being
    written (streaming), so it may be unfinished.
    """
    if not text.strip():
        return [] if partial else ["empty"]
    liked = [items[i] for i in state.liked if i in items]
    # Titles and names the text may state; blanked out before looking for other titles,
    # counting sentences or repeats ("Dr. Strangelove", "Michael Bay" are not claims).
    allowed = [f.item.title, *f.item.director, *f.item.cast]
    for lk in liked:
        allowed += [lk.title, *lk.director, *lk.cast]
    blank = _blank(text, allowed)
    return (_form_problems(text, blank, f, liked, partial)
            + _title_problems(text, blank, f, liked, items, title_index)
            + _fact_problems(text, blank, f, liked, state, known_people))


def _form_problems(text: str, blank: str, f: Facts, liked: list[Item], partial: bool) -> list[str]:
    problems = []
    if len(text.split()) > MAX_WORDS:
        problems.append("too long")
    if not partial and not text.rstrip().endswith((".", "!")):
        problems.append("unfinished sentence")
    if len(re.findall(r"[.!?](?:\s|$)", blank)) > 2:
        problems.append("more than two sentences")
    if re.search(r"\b(movie|facts?|title)\s*:", text, re.I) or "\n" in text.strip():
        problems.append("echoes the prompt")
    words = re.findall(r"[a-z0-9']+", blank.lower())
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    if len(grams) != len(set(grams)):
        problems.append("repeats itself")
    grounding = " ".join(f.lines()).lower() + " " + " ".join(
        f"{lk.title} {' '.join(lk.genres)}" for lk in liked).lower()
    unsupported = [w for w in set(re.findall(r"[a-z0-9']+", text.lower()))
                   if w not in grounding and w not in _GLUE and len(w) > 2]
    if len(unsupported) > 3:
        problems.append(f"says things the facts do not: {sorted(unsupported)[:6]}")
    return problems


def _title_problems(text, blank, f: Facts, liked, items, title_index) -> list[str]:
    problems = []
    allowed_keys = {title_key(t) for t in [f.item.title, *(lk.title for lk in liked)]}
    for m in title_index.find(blank):
        if title_key(items[m.item_id].title) not in allowed_keys and _mentions_title(m.text):
            problems.append(f"names another title: {m.text!r}")
    for m in title_index.find(text):
        after = re.match(r"\s*\((\d{4})\)", text[m.end:])
        if after and m.item_id in items and items[m.item_id].year != int(after.group(1)):
            problems.append(f"gives {m.text!r} the wrong year")
    for q in _QUOTED.findall(text):
        if title_key(q) not in allowed_keys:
            problems.append(f"quotes something that is not the item or a liked title: {q!r}")
    return problems


def _fact_problems(text, blank, f: Facts, liked, state, known_people) -> list[str]:
    problems = []
    credited = set(f.item.director) | set(f.item.cast)
    for lk in liked:
        credited |= set(lk.director) | set(lk.cast)
    for run in _CAPITAL_RUN.findall(text):
        if run in known_people and run not in credited:
            problems.append(f"names a person not credited: {run!r}")
    years = {f.item.year} | {lk.year for lk in liked} | {state.year_min, state.year_max}
    decades = {y // 10 * 10 for y in years if y}
    for m in _YEAR.finditer(text):
        y, is_decade = int(m.group(1)), m.group(0).endswith("s")
        if (is_decade and y not in decades) or (not is_decade and y not in years):
            problems.append(f"states a year that does not fit: {m.group(0)}")
    lowered = blank.lower()
    for genre, words in GENRE_WORDS.items():
        if genre not in f.item.genres and any(
                re.search(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", lowered)
                for w in words if w in _GENRE_NAMES):
            problems.append(f"calls it {genre}, which it is not")
    return problems


# Only unambiguous genre names count as a claim ("space" or "family" may be description).
_GENRE_NAMES = {g.lower() for g in ML_GENRES} | {"sci fi", "science fiction", "scifi", "comedy",
                                                 "comedies", "romantic", "animated", "documentary",
                                                 "western", "musical", "thriller", "horror", "noir"}


# Words an explanation may use beyond the facts without claiming anything.
_GLUE = set("""
this that these those it its it's is are was were be been has have had also both and or but
as so such with for from of in on at by to the a an you your you'll you've youre if since
because which who whom whose what when while than then too very more most much many well
like liked love loved enjoy enjoyed enjoys fan fans might may will would could should can
great good fit fits suits suit pick choice watch watched watching film films movie movies
story stories similar same kind sort style feel mood taste tastes favourite favorite also
another one two perfect worth check out give try here there classic era decade years year
released release came out made directed director stars starring star cast features featuring
genre genres asked request requested want wanted looking often people who viewers audiences
""".split())


def _blank(text: str, phrases) -> str:
    """``text`` with each phrase (longest first, any case) replaced by ``X``."""
    for phrase in sorted({p for p in phrases if p}, key=len, reverse=True):
        text = re.sub(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", "X", text, flags=re.I)
    return text


def _mentions_title(span: str) -> bool:
    # A lower-case one-word "title" inside prose ("heat", "speed") is a word, not a claim.
    return span[:1].isupper() or len(span.split()) > 1


def whole_sentences(text: str, most: int = 2) -> str:
    """The first ``most`` complete sentences of a draft, without a trailing fragment
    (generation stops at a token budget, often mid-sentence). A draft with no complete
    sentence comes back whole, for the check to reject.

    >>> whole_sentences("It is a comedy. Directed by Ron Howard. It also stars")
    'It is a comedy. Directed by Ron Howard.'
    >>> whole_sentences("Dr. Strangelove is satirical. It fits.", most=1)
    'Dr. Strangelove is satirical.'
    >>> whole_sentences("It is a comedy that")
    'It is a comedy that'
    """
    text = " ".join(text.split())
    ends = [m.end() for m in re.finditer(r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bSt)(?<!\bvs)"
                                         r"[.!](?=\s|$)", text)]
    if not ends:
        return text
    return text[: ends[min(most, len(ends)) - 1]]


def explanation_messages(f: Facts) -> list[dict]:
    from prompts import load_prompt

    return [{"role": "system", "content": load_prompt("explain_system").text},
            {"role": "user", "content": load_prompt("explain_user").render(
                title=f.item.label, facts="\n".join("- " + line for line in f.lines()))}]
