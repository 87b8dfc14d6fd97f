"""One conversational turn: parse, retrieve, rank, explain."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Iterator

from agent.errors import BackendError, InputError
from agent.explain.check import check_explanation, whole_sentences
from agent.explain.facts import Facts, gather_facts
from agent.explain.writer import explain_picks, explanation_messages
from agent.rank.verbalizer import Ranked
from agent.types import DialogueState, Recommendation, Reply, TurnEvent
from agent.understand.facets import FacetIndex
from agent.understand.parse import MAX_MESSAGE_CHARS, parse_message
from agent.understand.state import describe, merge, relaxations

log = logging.getLogger(__name__)

CLARIFY = ("Tell me a bit more so I can tailor this: a movie you liked, a genre or mood, "
           "or a decade (for example \"something like Alien but from the 90s\").")
OFF_TOPIC = ("I can only help with films: I recommend titles from the catalog and say why. "
             "Tell me one you liked, a genre or a mood, or a decade.")
LESSER_KNOWN_BOOST = 0.2
DEGRADED_RANKING = "The ranking model is unavailable, so these are in retrieval order."
DEGRADED_EXPLAIN = "The language model could not write explanations; showing catalog facts."


def clean_message(message) -> str:
    """Validate a user message; raises ``InputError`` with what to fix."""
    if not isinstance(message, str):
        raise InputError("the message must be text")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in message).strip()
    if not text:
        raise InputError("the message is empty; say what you would like to watch")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InputError(f"the message is {len(text)} characters; keep it under {MAX_MESSAGE_CHARS}")
    return text


class Recommender:
    """Runs turns. Its parts come in through the constructor (see ``agent.build``)."""

    def __init__(self, catalog, title_index, retriever, ranker, backend=None, *,
                 n_candidates: int = 30, top_k: int = 3, explain: str = "llm",
                 known_people: set[str] | None = None, max_explain_tokens: int = 60,
                 reranker=None, extractor=None, people=None, reference=None, guesser=None):
        self.catalog, self.title_index = catalog, title_index
        self.retriever, self.ranker, self.backend = retriever, ranker, backend
        self.n_candidates, self.top_k, self.explain_mode = n_candidates, top_k, explain
        self.max_explain_tokens = max_explain_tokens
        self.reranker = reranker  # agent.rank.rerank.TailDiversityReranker, or None
        self.extractor = extractor  # agent.understand.extract.StateExtractor, or None (rules only)
        self.people = people  # agent.understand.people.PeopleIndex: "films with Tom Hanks"
        self.reference = reference  # ReferenceFilms: titles outside the catalog
        self.guesser = guesser  # TitleGuesser: titles the reference table lacks, or None
        self.known_people = known_people if known_people is not None else {
            p for it in catalog.items.values() for p in catalog.schema.roles.credits(it)}
        # The catalog's own facets ("a blue wool jumper under 50"), and which film rules
        # its schema has facets for (MovieLens: all of them; a shop's: none).
        self.facets = FacetIndex.for_catalog(catalog)
        self._values_version = getattr(catalog, "values_version", 0)
        self.roles = frozenset(f.role for f in catalog.schema.facets if f.role)

    def clarify_text(self) -> str:
        """The clarifying question: MovieLens' own, or one naming the catalog's facets."""
        if "genre" in self.roles:
            return CLARIFY
        s = self.catalog.schema
        names = [f.name for f in s.requestable if f.kind != "range"]
        ranges = [f.name for f in s.requestable if f.kind == "range"]
        what = (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1
                else names[0] if names else f"kind of {s.item_noun}")
        more = f", or a {ranges[0]} range" if ranges else ""
        return (f"Tell me a bit more so I can tailor this: the {what} you want or want to "
                f"avoid{more}.")

    def off_topic_text(self) -> str:
        if "genre" in self.roles:
            return OFF_TOPIC
        noun = self.catalog.schema.item_noun
        return (f"I can only help with this catalog: I recommend its {noun}s and say why. "
                f"{self.clarify_text().split(': ', 1)[1].capitalize()}")

    def is_vague(self, state: DialogueState) -> bool:
        return not (state.liked or state.genres or state.year_min or state.year_max
                    or state.excluded_genres or state.query or state.people or state.moods
                    or state.like_genres or state.well_liked or state.lesser_known
                    or state.facets or state.excluded_facets or state.bounds)

    def parse(self, text: str):
        """The rules' parse of a message, refined by the LLM's JSON form when enabled."""
        version = getattr(self.catalog, "values_version", 0)
        if version != self._values_version:  # an item added online brought a new value
            self.facets, self._values_version = FacetIndex.for_catalog(self.catalog), version
        parsed = parse_message(text, self.title_index, self.people, self.reference,
                               self.facets, self.roles)
        if self.extractor is not None:
            parsed = self.extractor.refine(text, parsed)
        return self.guess_unknown(parsed)

    def guess_unknown(self, parsed):
        """Titles nothing knows, described by the LLM when a guesser is set: each guess
        becomes an ``outside`` film (remembered by the reference so retrieval finds it),
        the rest stay named as not found."""
        if self.guesser is None or self.reference is None or not parsed.not_found:
            return parsed
        guessed, unknown = [], []
        for title in parsed.not_found:
            film = self.guesser.guess(title)
            (guessed if film else unknown).append(film or title)
        for film in guessed:
            self.reference.remember(film)
        return replace(parsed, outside=parsed.outside + tuple(guessed), not_found=tuple(unknown))

    def state_from(self, messages: list[str]) -> DialogueState:
        """The state earlier messages lead to, without ranking (stateless API callers
        send the whole conversation each time). Unusable messages are skipped."""
        state = DialogueState()
        for m in messages:
            try:
                state = merge(state, self.parse(clean_message(m)), self.catalog.items,
                              self.catalog.schema.roles)
            except InputError:
                continue
        return state

    def turn(self, message, state: DialogueState | None = None,
             diversity: float | None = None) -> Reply:
        """Answer ``message`` given the previous ``state``; returns the reply and new state.
        ``diversity`` overrides the re-ranker's for this turn (a UI slider)."""
        *_, last = self.turn_stream(message, state, diversity, stream=False)
        return last.reply

    def turn_stream(self, message, state: DialogueState | None = None,
                    diversity: float | None = None, stream: bool = True) -> Iterator[TurnEvent]:
        """``turn`` as events: ``picks`` as soon as the items are ranked, then ``draft``
        events while explanations are written (``stream=True``), then ``final``.
        Raises ``InputError`` for an unusable message before yielding anything."""
        t0 = time.perf_counter()
        text = clean_message(message)
        parsed = self.parse(text)
        state = merge(state or DialogueState(), parsed, self.catalog.items,
                      self.catalog.schema.roles)
        timings = {"parse": time.perf_counter() - t0}
        said = self.understood(parsed)
        if self.is_vague(state):
            ask = self.off_topic_text() if parsed.off_topic else self.clarify_text()
            yield TurnEvent("final", Reply("\n".join(said + [ask]), (), state, timings=timings))
            return
        notices = []
        t = time.perf_counter()
        strict, cands, used, loosened = self.candidates(state)
        said += loosened
        timings["retrieve"] = time.perf_counter() - t
        if not cands:
            yield TurnEvent("final", Reply(self.nothing_fits(state, said), (), state,
                                           timings=timings))
            return
        t = time.perf_counter()
        if used is state or not strict:
            top = self.rank(used, cands, diversity, notices)
        else:  # what fits the whole request comes first; the loosened ones fill up
            top = self.rank(state, strict, diversity, notices)
            fits = {r.item_id for r in top}
            rest = [c for c in cands if c.item_id not in fits]
            top += self.rank(used, rest, diversity, notices, taken=top)[: self.top_k - len(top)]
        timings["rank"] = time.perf_counter() - t
        state = state.with_changes(shown=state.shown + tuple(r.item_id for r in top),
                                   last=tuple(r.item_id for r in top))
        timings["picks"] = time.perf_counter() - t0  # time to first recommendation

        def reply(explanations, sources) -> Reply:
            recs = []
            for r, e, s in zip(top, explanations, sources):
                item = self.catalog.get(r.item_id)
                recs.append(Recommendation(item, r.score, e, s, r.retrieval_score, r.llm_score,
                                           self.catalog.schema.facts_of(item.value)))
            recs = tuple(recs)
            return Reply(render_text(recs, state, self.catalog.items, said, self.catalog.schema,
                                     self._facet_values()), recs, state,
                         tuple(dict.fromkeys(notices)), dict(timings))

        picks = reply([""] * len(top), ["pending"] * len(top))
        yield TurnEvent("picks", picks)
        facts = [gather_facts(self.catalog.get(r.item_id), used, self.catalog.items,
                              self.catalog.cowatch, self.catalog.schema) for r in top]
        t = time.perf_counter()
        if stream:
            drafts = self.explain_stream(facts, state, notices)
            while True:
                try:
                    k, draft = next(drafts)
                except StopIteration as done:
                    explanations, sources = done.value
                    break
                yield TurnEvent("draft", picks, k, draft)
        else:
            explanations, sources = self.explain(facts, state, notices)
        timings["explain"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        yield TurnEvent("final", reply(explanations, sources))

    def candidates(self, state: DialogueState):
        """The candidates of ``state`` and, when too few fit, of the least loosened state
        that has more (``relaxations``): (the strict ones, the ones used, the state used,
        one sentence per thing let go, the widest of each kind)."""
        strict = self.retriever.retrieve(state, self.n_candidates)
        cands, used = strict, state
        loosened: dict[str, str] = {}
        if len(cands) < self.top_k:  # too little fits: loosen step by step, and say so
            steps = []  # each step keeps the earlier ones: the state used lets go of them all
            for looser, why in relaxations(state, self.catalog.schema):
                steps.append(why)
                more = self.retriever.retrieve(looser, self.n_candidates)
                if len(more) > len(cands):
                    cands, used = more, looser
                    for why in steps:
                        loosened[why.split(",")[0]] = why[0].upper() + why[1:] + "."
                if len(cands) >= self.top_k:
                    break
        return strict, cands, used, list(loosened.values())

    def nothing_fits(self, state: DialogueState, said: list[str]) -> str:
        looking = describe(state, self.catalog.items, self.catalog.schema, self._facet_values())
        return "\n".join(said + [f"{looking}.", (
            "Nothing in the catalog fits all of that. Try relaxing a constraint "
            + ("(another decade, or fewer excluded genres)." if "genre" in self.roles
               else "(a wider range, or fewer exclusions)."))])

    def understood(self, parsed) -> list[str]:
        """Sentences about titles the catalog lacks: what was used instead of each one
        the reference table knows, and which ones nothing knows."""
        out = []
        roles = self.catalog.schema.roles
        years = [y for it in self.catalog.items.values() for y in [roles.year_of(it)] if y]
        span = f" (its films are from {min(years)} to {max(years)})" if years else ""
        for film in parsed.outside:
            like = (f"I looked for {' or '.join(film.genres)} films instead" if film.genres
                    else "I could not tell what it is like")
            if film.guessed:  # the model's word, not a fact: said as a guess
                out.append(f"{film.label} is not in the catalog{span} or my reference list of "
                           f"films; the language model guesses it is {' or '.join(film.genres)}"
                           ", so I looked for those (a guess, it may be wrong).")
            else:
                out.append(f"{film.label} is not in the catalog{span}; {like}.")
        for title in parsed.not_found:
            out.append(f"I don't know \"{title}\": it is not in the catalog or my reference "
                       "list of films, so I left it out.")
        return out

    def rank(self, state: DialogueState, cands, diversity, notices: list[str],
             taken=()) -> list:
        """The top ``top_k`` of ``cands``: the LLM ranker (retrieval order when it fails),
        then the long-tail and diversity re-ranker; one film per title (``distinct``)."""
        try:
            ranked = self.ranker.rank(state, cands)
        except BackendError as e:  # backend boundary: a failing model degrades; a bug raises
            log.warning("ranking failed, using retrieval order: %s", e)
            notices.append(DEGRADED_RANKING)
            # Entries like the ranker's (a dataclass): the re-ranker rewrites their scores
            # to its objective too, so the reply's scores are best first either way.
            ranked = [Ranked(c.item_id, c.score, c.score, None) for c in cands]
        if self.reranker is not None:
            tail = state.tail_boost
            if state.lesser_known and tail is not None:
                # Retrieval already kept only tail items: a full boost on top would put the
                # least-watched first, which is obscure, not a gem.
                tail = min(tail, LESSER_KNOWN_BOOST)
            ranked = self.reranker.like_named(ranked, state)
            ranked = self.reranker.rerank(ranked, tail_boost=tail, diversity=diversity)
        ranked = self.distinct(ranked, state, taken)
        if self.reranker is not None and state.tail_boost is None and not state.lesser_known:
            # The default only: a user who moved the slider or asked for hidden gems
            # or popular films has said how familiar the picks should be.
            ranked = self.reranker.floored(ranked, cands, self.top_k)
        return ranked[: self.top_k]

    def distinct(self, ranked, state: DialogueState, taken=()) -> list:
        """``ranked`` without a title already picked, ``taken``, shown, liked or disliked
        under another id (MovieLens-100K lists 18 films twice, e.g. two "Kull the
        Conqueror (1997)"): a person sees the same film, not two items."""
        items = self.catalog.items

        def label(i):
            return items[i].label if i in items else i
        seen = {label(i) for i in (*state.shown, *state.liked, *state.disliked)}
        seen |= {label(r.item_id) for r in taken}
        out = []
        for r in ranked:
            if label(r.item_id) not in seen:
                seen.add(label(r.item_id))
                out.append(r)
        return out

    def _facet_values(self) -> dict | None:
        """The catalog's facet values, for the explanation check (None for a catalog
        without a schema's facets, such as a test's stand-in)."""
        return getattr(self.catalog, "facet_values", None)

    def explain(self, facts: list[Facts], state, notices) -> tuple[list[str], list[str]]:
        templates = explain_picks(facts)
        if self.explain_mode != "llm" or self.backend is None:
            return templates, ["template"] * len(facts)
        try:
            drafts = self.backend.generate([explanation_messages(f) for f in facts],
                                           self.max_explain_tokens)
        except BackendError as e:  # backend boundary, as above
            log.warning("explanation generation failed: %s", e)
            notices.append(DEGRADED_EXPLAIN)
            return templates, ["template"] * len(facts)
        return self.checked(drafts, facts, state, templates)

    def checked(self, drafts, facts, state, templates) -> tuple[list[str], list[str]]:
        """Each draft (its first two whole sentences) if it passes the catalog check, else
        its factual template."""
        texts, sources = [], []
        for f, draft, fallback in zip(facts, drafts, templates):
            draft = whole_sentences(draft)
            problems = check_explanation(draft, f, state, self.catalog.items, self.title_index,
                                         self.known_people, values=self._facet_values())
            if problems:
                log.info("explanation for %s rejected: %s", f.item.label, problems)
            texts.append(fallback if problems else draft)
            sources.append("template" if problems else "llm")
        return texts, sources

    def explain_stream(self, facts: list[Facts], state, notices):
        """Generator of ``(pick index, explanation so far)``; returns what ``explain``
        returns for the same drafts. Text is shown a whole word at a time and only while
        it passes the catalog check; a draft whose start fails stops growing, and the
        final check (the same as ``explain``'s) picks the draft or the template."""
        templates = explain_picks(facts)
        if self.explain_mode != "llm" or self.backend is None:
            return templates, ["template"] * len(facts)
        drafts, shown = [""] * len(facts), [""] * len(facts)
        held = [False] * len(facts)
        try:
            for k, piece in self.backend.stream_many(
                    [explanation_messages(f) for f in facts], self.max_explain_tokens):
                drafts[k] += piece
                words = drafts[k].split()
                ready = " ".join(words[:-1])  # the last word may still grow
                if held[k] or ready == shown[k]:
                    continue
                if check_explanation(ready, facts[k], state, self.catalog.items,
                                     self.title_index, self.known_people, partial=True,
                                     values=self._facet_values()):
                    held[k] = True
                    continue
                shown[k] = ready
                yield k, ready
        except BackendError as e:  # backend boundary, as in explain
            log.warning("explanation streaming failed: %s", e)
            notices.append(DEGRADED_EXPLAIN)
            for k, fallback in enumerate(templates):
                yield k, fallback
            return templates, ["template"] * len(facts)
        texts, sources = self.checked(drafts, facts, state, templates)
        for k, text in enumerate(texts):
            if text != shown[k]:
                yield k, text
        return texts, sources


def render_text(recs, state: DialogueState, items, said=(), schema=None, values=None) -> str:
    lines = list(said) + [describe(state, items, schema, values) + "."]
    for k, r in enumerate(recs, 1):
        lines.append(f"{k}. {r.item.label} — {r.explanation}")
    return "\n".join(lines)
