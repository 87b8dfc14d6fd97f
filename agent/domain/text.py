"""Text shared by every catalog: how a title is normalized to be found in free text and
joined across tables."""

from __future__ import annotations

import re
import unicodedata

_PAREN = re.compile(r"\([^)]*\)")
_NON_ALNUM = re.compile(r"[^a-z0-9 ]+")
_LEADING_ARTICLE = re.compile(r"^(the|a|an|la|le|les|il|el|das|der|die) ")


def title_key(title: str) -> str:
    """Normalize a title for joining: lowercase ASCII, no articles, punctuation or aliases.

    >>> title_key("The City of Lost Children (Cité des enfants perdus, La)")
    'city of lost children'
    >>> title_key("Star Wars: Episode IV - A New Hope") == title_key("Star Wars Episode IV  A New Hope")
    True
    """
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    t = _PAREN.sub(" ", t).replace("&", " and ")
    t = re.sub(r"^(.*), (the|a|an)$", r"\2 \1", t.strip())
    t = _NON_ALNUM.sub(" ", t)
    t = " ".join(t.split())
    return _LEADING_ARTICLE.sub("", t)
