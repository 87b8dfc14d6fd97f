"""Synthetic request -> state pairs for the state-extraction adapter, drawn from the catalog.

Each example is one message a person might send, built from the phrasings in
``state_templates.json`` around real catalog values: titles (liked, disliked, and
well-known ones the catalog lacks), credited people, genres (alone, compound, in
French, Spanish or German), vocabulary moods, negated genres and concepts ("no
violence"), decades and year bounds. Noise a real user adds: misspellings, lower
case, filler, no punctuation. The answer is the JSON form of ``agent.understand.extract`` as
the grammar writes it (``form_text``), and the prompt is the agent's own
(``extraction_messages``, from the prompt files), so the adapter learns exactly
what it will be asked. Titles and people are copied as written (misspelled ones
too) and only kept when ``agent.understand.extract`` resolves them back to the intended
catalog value. Everything is seeded; the held-out requests in tests/data are
never read here.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.domain.movielens.loaders import ML_GENRES
from agent.understand.extract import extraction_messages, form_text
from finetune.state_sources import Sources

TEMPLATES_FILE = Path(__file__).with_name("state_templates.json")
KINDS = ("liked", "disliked", "outside", "person", "director", "genre", "excluded", "concept",
         "mood", "years")
SHARE = {"liked": 0.3, "disliked": 0.08, "outside": 0.06, "person": 0.14, "director": 0.08,
         "genre": 0.42, "excluded": 0.15, "concept": 0.08, "mood": 0.25, "years": 0.3}
EMPTY_SHARE, OTHER_LANGUAGE_SHARE = 0.07, 0.18
LOWER_SHARE, TYPO_SHARE = 0.3, 0.3
KEYBOARD = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wqeryuioipsadfghjkjlxzvcbmn"))


@dataclass(frozen=True)
class StateExample:
    """One message with its target form."""

    text: str
    form: dict
    skills: tuple[str, ...]  # what it exercises: slot kinds, "typo", "lower", "fr", "empty"
    messages: tuple[dict, ...]
    answer: str  # ``form_text(form)``: what the adapter learns to write

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> StateExample:
        return cls(d["text"], d["form"], tuple(d["skills"]), tuple(d["messages"]), d["answer"])


def load_templates(path: Path = TEMPLATES_FILE) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def synthesise(src: Sources, n: int, seed: int, templates: dict | None = None) -> list[StateExample]:
    """``n`` examples (seeded). A message whose values do not resolve back is redrawn."""
    from agent.understand.vocabulary import load_vocabulary

    t = templates or load_templates()
    rng = random.Random(seed)
    vocab = load_vocabulary()
    out = []
    while len(out) < n:
        ex = _example(rng, src, t, vocab)
        if ex is not None and _consistent(ex.form) and _resolves(ex, src):
            out.append(ex)
    return out


def _example(rng, src: Sources, t: dict, vocab) -> StateExample | None:
    if rng.random() < EMPTY_SHARE:
        lang = rng.choice(list(t["languages"])) if rng.random() < 0.2 else None
        text = rng.choice(t["languages"][lang]["empty"] if lang else t["empty"])
        return _finish(rng, text, {}, ["empty"] + ([lang] if lang else []))
    if rng.random() < OTHER_LANGUAGE_SHARE:
        lang = rng.choice(list(t["languages"]))
        return _foreign(rng, src, t, lang)
    kinds = [k for k in KINDS if rng.random() < SHARE[k]][:3] or [rng.choice(KINDS)]
    form: dict = {}
    skills = list(kinds)
    head, clauses = _head(rng, src, t, vocab, kinds, form, skills), []
    for kind in kinds:
        clause = _clause(rng, src, t, vocab, kind, form, skills)
        if clause:
            clauses.append(clause)
    if not head and not clauses:
        return None
    opener = rng.choice(t["openers"])
    parts = [f"{opener} {head}".strip()] if head else []
    parts += clauses
    if rng.random() < 0.3:
        rng.shuffle(parts)
    text = parts[0]
    for p in parts[1:]:
        text += rng.choice([", ", ", ", ". ", " - ", "; "]) + p
    return _finish(rng, text + rng.choice(t["closers"]), form, skills)


def _head(rng, src, t, vocab, kinds, form, skills) -> str:
    """The noun phrase of the request: genres, with a mood, a decade or a person in it
    ("a cozy comedy", "eighties sci-fi", "Meryl Streep dramas")."""
    if "genre" not in kinds:
        return ""
    kinds.remove("genre")
    people = [k for k in ("person", "director") if k in kinds]
    if people and src.people and src.directors and rng.random() < 0.35:
        kinds.remove(people[0])
        g = rng.choice(list(t["genre_bare"]))
        name = _person_name(rng, src, people[0], skills)
        _add(form, "people", name)
        _add(form, "genres", g)
        return f"{name} {_typo(rng, rng.choice(t['genre_bare'][g]), skills)}"
    mood = None
    if "mood" in kinds and rng.random() < 0.5:
        mood = _mood_word(rng, vocab, adjective=True)
        if mood:
            kinds.remove("mood")
            _add(form, "moods", mood[0])
    pair = rng.random() < 0.06
    genres = rng.sample(list(t["genre_nouns"]), 2 if rng.random() < 0.25 else 1)
    if pair:
        phrase = rng.choice(list(t["genre_pairs"]))
        genres = t["genre_pairs"][phrase]
        skills.append("compound")
    elif len(genres) == 2 and genres[1] in t["genre_heads"]:
        phrase = (f"{_typo(rng, rng.choice(t['genre_adjectives'][genres[0]]), skills)} "
                  f"{_typo(rng, rng.choice(t['genre_heads'][genres[1]]), skills)}")
        skills.append("compound")
    else:
        genres = genres[:1]
        phrase = _typo(rng, rng.choice(t["genre_nouns"][genres[0]]), skills)
    for g in genres:
        _add(form, "genres", g)
    if "years" in kinds and rng.random() < 0.35:  # "eighties sci-fi", "an 80s comedy"
        kinds.remove("years")
        d = rng.choice(list(t["decade_words"]))
        form["year_min"], form["year_max"] = int(d), int(d) + 9
        phrase = f"{_typo(rng, rng.choice(t['decade_words'][d]), skills)} {phrase}"
    pattern = rng.choice([p for p in t["wanted"] if ("{m}" in p) == bool(mood)])
    if rng.random() < 0.2 and not mood:
        pattern = "{g}"
    return pattern.replace("{m}", mood[1] if mood else "").replace("{g}", phrase)


def _person_name(rng, src, kind, skills) -> str:
    """A credited name as a user would write it: in full, or the surname alone when it
    names one person with several films ("Bogart", "Hitchcock"), maybe misspelled."""
    from agent.understand.people import name_key

    name = rng.choice(src.directors if kind == "director" else src.people)
    surname = name_key(name).split()[-1] if name_key(name) else ""
    if rng.random() < 0.2 and src.people_index.by_surname.get(surname) == name:
        name = name.split()[-1]
        skills.append("surname")
    return _typo(rng, name, skills, title=True)


def _clause(rng, src, t, vocab, kind, form, skills) -> str:
    if kind in ("liked", "outside"):
        pool = src.outside if kind == "outside" else src.titles
        if not pool:
            return ""
        names = [_typo(rng, rng.choice(pool), skills, title=True)]
        if kind == "liked" and rng.random() < 0.25:
            names.append(_typo(rng, rng.choice(pool), skills, title=True))
        for name in names:
            _add(form, "liked_titles", name)
        if len(names) == 2:
            return rng.choice(t["liked_two"]).format(t=names[0], u=names[1])
        return rng.choice(t["liked_one"]).format(t=names[0])
    if kind == "disliked" and src.titles:
        name = _typo(rng, rng.choice(src.titles), skills, title=True)
        _add(form, "disliked_titles", name)
        return rng.choice(t["disliked"]).format(t=name)
    if kind in ("person", "director"):
        pool = src.directors if kind == "director" else src.people
        if not pool:
            return ""
        name = _person_name(rng, src, kind, skills)
        if rng.random() < 0.08:  # not wanted: the state has no excluded people
            skills.append("negated")
            return rng.choice(t["people_negated"]).format(p=name)
        _add(form, "people", name)
        heads = ("directors", "director_heads") if kind == "director" else ("people", "people_heads")
        return rng.choice(t[heads[0]] + t[heads[1]]).format(p=name)
    if kind == "excluded":
        g = rng.choice(ML_GENRES)
        _add(form, "excluded_genres", g)
        return rng.choice(t["excluded"]).format(g=_typo(rng, rng.choice(t["genre_bare"][g]), skills))
    if kind == "concept":
        name = rng.choice(list(t["concept_words"]))
        for g in vocab.concepts[name][1]:
            _add(form, "excluded_genres", g)
        word = _typo(rng, rng.choice(t["concept_words"][name]), skills)
        return rng.choice(t["concept_negations"]).format(w=word)
    if kind == "mood":
        mood = _mood_word(rng, vocab, adjective=False)
        if not mood:
            return ""
        _add(form, "moods", mood[0])
        word = mood[1]
        phrase = t["mood_phrases"].get(word)
        text = phrase or rng.choice(t["mood_adjective"])
        return text.replace("{w}", _typo(rng, word, skills))
    if kind == "years":
        return _years(rng, t, form, skills)
    return ""


def _years(rng, t, form, skills) -> str:
    r = rng.random()
    if r < 0.5:
        d = rng.choice(list(t["decade_words"]))
        second = str(int(d) + 10) if rng.random() < 0.15 and d != "1990" else None
        word = _typo(rng, rng.choice(t["decade_words"][d]), skills)
        if second:
            word += " or " + rng.choice(t["decade_words"][second])
        form["year_min"], form["year_max"] = int(d), int(second or d) + 9
        return rng.choice(t["decades"]).format(d=word)
    y = rng.randint(1935, 1998)
    if r < 0.85:
        phrase, lo, hi = rng.choice(t["year_phrases"])
        if lo is not None:
            form["year_min"] = y + lo
        if hi is not None:
            form["year_max"] = y + hi
        return phrase.format(y=y)
    a, b = sorted(rng.sample(range(1930, 1999), 2))
    form["year_min"], form["year_max"] = a, b
    return rng.choice(t["year_ranges"]).format(a=a, b=b)


def _foreign(rng, src, t, lang) -> StateExample | None:
    """A request in French, Spanish or German: genre, decade, a title or a person."""
    L = t["languages"][lang]
    form: dict = {}
    skills = [lang]
    parts = [f"{rng.choice(L['openers'])} {rng.choice(L['film'])}".strip()]
    if rng.random() < 0.75:
        g = rng.choice(list(L["genres"]))
        _add(form, "genres", g)
        parts[0] += " " + _typo(rng, rng.choice(L["genres"][g]), skills)
        skills.append("genre")
    if rng.random() < 0.45:
        d = rng.choice(list(t["decade_words"]))
        form["year_min"], form["year_max"] = int(d), int(d) + 9
        parts.append(rng.choice(L["decade"]).format(n=d[2:]))
        skills.append("years")
    if rng.random() < 0.25 and src.titles:
        name = _typo(rng, rng.choice(src.titles), skills, title=True)
        _add(form, "liked_titles", name)
        parts.append(rng.choice(L["like"]).format(t=name))
        skills.append("liked")
    elif rng.random() < 0.2 and src.people:
        name = rng.choice(src.people)
        _add(form, "people", name)
        parts.append(rng.choice(L["with"]).format(p=name))
        skills.append("person")
    if rng.random() < 0.2:
        g = rng.choice([g for g in L["genres"] if g not in form.get("genres", [])])
        _add(form, "excluded_genres", g)
        word = rng.choice(L["genres"][g]).removeprefix("de ").removeprefix("d'")
        parts.append(rng.choice(L["without"]).format(g=word))
        skills.append("excluded")
    if not form:
        return None
    return _finish(rng, rng.choice([" ", ", "]).join(parts), form, skills)


def _mood_word(rng, vocab, adjective: bool):
    """``(mood name, one of its words)``; ``adjective``: a word that fits "a ___ comedy"."""
    from agent.understand.parse import genre_words as english

    genre_words = {w for ws in english().values() for w in ws}
    name = rng.choice(list(vocab.moods))
    words = [w for w in vocab.moods[name].words if w not in genre_words and w != "lol"]
    if adjective:
        words = [w for w in words if " " not in w]
    return (name, rng.choice(words)) if words else None


def _add(form: dict, key: str, value) -> None:
    if value not in form.setdefault(key, []):
        form[key].append(value)


def _typo(rng, text: str, skills: list, title: bool = False) -> str:
    """``text`` with one slip of the keyboard in one long word (sometimes)."""
    if rng.random() >= TYPO_SHARE * (0.6 if title else 1.0):
        return text
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    w, k = words[i], rng.randrange(1, len(words[i]) - 1)
    op = rng.choice(["drop", "double", "swap", "near"])
    if op == "drop":
        w = w[:k] + w[k + 1:]
    elif op == "double":
        w = w[:k] + w[k] + w[k:]
    elif op == "swap":
        w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    else:
        w = w[:k] + KEYBOARD.get(w[k].lower(), w[k]) + w[k + 1:]
    words[i] = w
    skills.append("typo")
    return " ".join(words)


def _finish(rng, text: str, form: dict, skills: list) -> StateExample:
    text = " ".join(text.split())
    for key in ("liked_titles", "disliked_titles", "people"):  # in the order they are written
        if key in form:
            form[key] = sorted(form[key], key=lambda v: text.lower().find(v.lower()))
    if rng.random() < LOWER_SHARE:
        text = text.lower()
        skills.append("lower")
        form = {k: [v.lower() for v in vals] if k in ("liked_titles", "disliked_titles", "people")
                else vals for k, vals in form.items()}
    elif text[:1].islower() and rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return StateExample(text, form, tuple(dict.fromkeys(skills)),
                        tuple(extraction_messages(text)), form_text(form))


def _consistent(form: dict) -> bool:
    """No genre both wanted and avoided, no title both liked and disliked."""
    return not (set(form.get("genres", ())) & set(form.get("excluded_genres", ()))
                or set(form.get("liked_titles", ())) & set(form.get("disliked_titles", ())))


def _resolves(ex: StateExample, src: Sources) -> bool:
    """Whether ``agent.understand.extract`` reads the answer back as meant: every title and person
    resolves (a misspelled short title, say, would not) and the years count as named."""
    from agent.understand.extract import parse_extraction

    parsed = parse_extraction(ex.answer, ex.text, src.title_index, people=src.people_index,
                              reference=src.reference)
    lengths = {"liked_titles": 60, "disliked_titles": 60, "people": 40}
    if any(len(v) > n for k, n in lengths.items() for v in ex.form.get(k, [])):
        return False  # longer than the schema lets the model write
    titles = len(ex.form.get("liked_titles", [])) + len(ex.form.get("disliked_titles", []))
    found = len(parsed.liked) + len(parsed.disliked) + len(parsed.outside)
    years = (parsed.year_min, parsed.year_max) == (ex.form.get("year_min"), ex.form.get("year_max"))
    return found == titles and len(parsed.people) == len(ex.form.get("people", [])) and years


def skill_counts(examples) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ex in examples:
        for s in ex.skills:
            counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def save_examples(path, examples) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")


def load_examples(path) -> list[StateExample]:
    with open(path, encoding="utf-8") as f:
        return [StateExample.from_json(json.loads(line)) for line in f]


def data_fingerprint(n_train: int, n_val: int, seed: int) -> str:
    """Hash of what the synthetic examples depend on: counts, seed, prompts, schema,
    templates and vocabulary (so cached examples are reused only when all match)."""
    import hashlib

    from agent.understand.extract import STATE_PROMPTS, state_schema
    from agent.understand.vocabulary import VOCABULARY_FILE
    from prompts import prompt_hashes

    blob = json.dumps({"n": [n_train, n_val, seed], "prompts": prompt_hashes(STATE_PROMPTS),
                       "schema": state_schema(), "templates": TEMPLATES_FILE.read_text("utf-8"),
                       "vocabulary": VOCABULARY_FILE.read_text("utf-8")}, sort_keys=True)
    return "state-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
