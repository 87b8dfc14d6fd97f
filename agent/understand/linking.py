"""Find catalog titles named in free text (exact first, then fuzzy)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.domain.text import title_key
from agent.types import Item

_TOKEN = re.compile(r"[\w'’:.&!?-]+|\"")
MAX_TITLE_TOKENS = 9
# Words after which even a lower-case single word is taken as a title ("i loved alien").
CUE_WORDS = {"like", "liked", "love", "loved", "enjoyed", "enjoy", "adore", "adored", "watched",
             "saw", "hated", "hate", "disliked", "than", "to", "as", "not", "but"}


@dataclass(frozen=True)
class Mention:
    item_id: int
    start: int  # character offsets in the original text
    end: int
    text: str
    exact: bool


class TitleIndex:
    """Maps normalized titles to item ids (most popular first when titles repeat)."""

    def __init__(self, items: list[Item], fuzzy_cutoff: float = 90.0):
        self.by_key: dict[str, list[int]] = {}
        for it in sorted(items, key=lambda i: -i.popularity):
            bare = re.sub(r"\s*\(.*\)$", "", it.title)
            # "Terminator 2" names "Terminator 2: Judgment Day" (the part before a colon).
            short = bare.split(":")[0] if ":" in bare else ""
            for key in {title_key(it.title), title_key(bare), title_key(short)}:
                if key:
                    self.by_key.setdefault(key, []).append(it.id)
        self.keys = list(self.by_key)
        self.fuzzy_cutoff = fuzzy_cutoff

    def find(self, text: str) -> list[Mention]:
        """All non-overlapping title mentions in ``text``, longest first, in text order."""
        tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        used = [False] * len(tokens)
        found: list[Mention] = []
        for n in range(min(MAX_TITLE_TOKENS, len(tokens)), 0, -1):
            for i in range(len(tokens) - n + 1):
                if any(used[i:i + n]):
                    continue
                mention = self._match(text, tokens, i, n)
                if mention:
                    found.append(mention)
                    used[i:i + n] = [True] * n
        return sorted(found, key=lambda m: m.start)

    def _match(self, text, tokens, i, n) -> Mention | None:
        start, end = tokens[i][1], tokens[i + n - 1][2]
        span = text[start:end].rstrip(".,!?;:")
        key = title_key(span)
        # The message is just this span ("jurasic park"): a title typed on its own.
        whole = i == 0 and n == len(tokens) and n >= 2 and len(key) >= 8
        # A lower-case pair of words that is exactly a title of 8+ letters ("the godfather
        # was great") is the title; shorter pairs are too often ordinary phrases.
        exact_pair = n == 2 and len(key) >= 8 and key in self.by_key
        # A lower-case title opening a list: "casablanca and the maltese falcon".
        listed = (n == 1 and i == 0 and len(key) >= 6 and key in self.by_key
                  and len(tokens) > 1 and tokens[1][0].lower() in {"and", "or", "&"})
        if not key or not (self._plausible(text, tokens, i, n, span, key) or whole
                           or exact_pair or listed):
            return None
        if key in self.by_key:
            return Mention(self.by_key[key][0], start, start + len(span), span, True)
        cued = i > 0 and tokens[i - 1][0].lower() in CUE_WORDS
        # Fuzzy (misspelt) matches: capitalized spans, or lower-case ones right after a cue
        # ("i enjoyed pulp fction"), long enough that a near miss is not another phrase.
        if n >= 2 and len(key) >= 6 and (span[:1].isupper() or whole
                                         or (cued and len(key) >= 8)):
            from rapidfuzz import fuzz, process

            hit = process.extractOne(key, self.keys, scorer=fuzz.ratio,
                                     score_cutoff=self.fuzzy_cutoff)
            if hit:
                return Mention(self.by_key[hit[0]][0], start, start + len(span), span, False)
        return None

    @staticmethod
    def _plausible(text, tokens, i, n, span, key) -> bool:
        """Reject spans that are ordinary words rather than a title.

        A span counts when it is quoted, or starts with a capital letter or digit,
        or (for lower-case text) has several words, or follows a cue like "loved".
        Spans starting or ending on a bare article or conjunction are never titles.
        """
        words = span.split()
        if words[0].lower() in {"and", "or", "but", "a", "an", "the", "i"} and n == 1:
            return False
        if words[-1].lower() in {"and", "or", "but", "the", "a", "an", "of", "from", "with"}:
            return False
        quoted = i > 0 and tokens[i - 1][0] == '"'
        first_word_of_text = i == 0
        capital = span[:1].isupper() or span[:1].isdigit()
        if quoted:
            return True
        if n == 1:
            prev = tokens[i - 1][0].lower() if i > 0 else ""
            nxt = tokens[i + 1][0].lower() if i + 1 < len(tokens) else ""
            # A lone capitalized word at the very start is usually just a sentence start,
            # unless it is listed with others: "Heat and Fargo were great".
            opening_list = first_word_of_text and (nxt in {"and", "or", "&", "is", "was", "were"} or
                                                   text[tokens[i][2]:tokens[i][2] + 1] == ",")
            return (capital and (not first_word_of_text or opening_list) and len(key) >= 2) \
                or prev in CUE_WORDS
        if capital:
            return True
        prev = tokens[i - 1][0].lower() if i > 0 else ""
        return prev in CUE_WORDS or (n >= 3 and len(key) >= 10)
