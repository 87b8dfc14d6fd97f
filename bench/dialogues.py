"""The fixed requests every latency figure is measured on: 21 messages in 9 dialogues
(a dialogue's later messages continue its state: "more like the second one").

Each message names something the agent can act on (a title, genre, decade or a
reference to the last picks), so every turn ranks; none asks a clarifying question.
"""

from __future__ import annotations

DIALOGUES: tuple[tuple[str, ...], ...] = (
    ("I loved Alien and Blade Runner, something from the 90s",
     "more like the second one",
     "not that one, something older"),
    ("a funny animated movie for kids",
     "something newer, from the 90s"),
    ("I'm in the mood for a crime thriller like Heat, but no horror",
     "hidden gems please",
     "any decade is fine"),
    ("romantic comedies from the 80s",
     "more like the first one"),
    ("I liked Star Wars and Raiders of the Lost Ark",
     "less violent, something with adventure and fantasy"),
    ("a classic film noir from the 40s or 50s",
     "more like the third one"),
    ("I hated Titanic. I want a war movie",
     "something from before 1980",
     "popular ones please"),
    ("a western with a great cast",
     "something like Unforgiven"),
    ("a tense sci-fi thriller like Twelve Monkeys",
     "no horror, and newer"),
)


def messages(dialogues=DIALOGUES) -> list[str]:
    """Every message, dialogue after dialogue.

    >>> len(messages())
    21
    """
    return [m for d in dialogues for m in d]


def pick_dialogues(n_turns: int, dialogues=DIALOGUES) -> tuple[tuple[str, ...], ...]:
    """The first ``n_turns`` messages, dialogue by dialogue (the last one cut short).

    >>> [len(d) for d in pick_dialogues(4)]
    [3, 1]
    >>> len(messages(pick_dialogues(100)))
    21
    """
    out, left = [], n_turns
    for d in dialogues:
        if left <= 0:
            break
        out.append(tuple(d[:left]))
        left -= len(out[-1])
    return tuple(out)
