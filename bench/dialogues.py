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


# The warm-up turn is not one of the measured ones: a server's prefix cache would
# otherwise answer the first measured turn from memory.
WARM_UP = "I loved Fargo and Chinatown, a crime film from the 70s"

# The API load needs many distinct conversations: 24 liked titles x 8 asks, each with
# one of three follow-ups. No two sessions in a run send the same first message.
LOAD_TITLES = ("Toy Story", "Star Wars", "Fargo", "Heat", "Alien", "Blade Runner",
               "Pulp Fiction", "The Godfather", "Casablanca", "Jurassic Park", "Braveheart",
               "Titanic", "Men in Black", "Twelve Monkeys", "The Usual Suspects", "Apollo 13",
               "Aliens", "Die Hard", "Raiders of the Lost Ark", "Back to the Future",
               "The Silence of the Lambs", "Forrest Gump", "Schindler's List",
               "L.A. Confidential")
LOAD_ASKS = ("something from the 90s", "but funnier", "a thriller this time",
             "something from the 80s", "no horror please", "hidden gems", "with more action",
             "a drama", "something lighter", "a classic", "with a bit of romance",
             "something from the 70s")
LOAD_FOLLOW_UPS = (("something older", "more like the first one"),
                   ("more like the second one", "something newer"),
                   ("not that one", "any decade is fine"))


def load_dialogue(k: int) -> tuple[str, ...]:
    """The ``k``-th of the API load's distinct conversations (``k`` < 288).

    >>> load_dialogue(0)
    ('I loved Toy Story, something from the 90s', 'something older', 'more like the first one')
    >>> len({load_dialogue(k)[0] for k in range(288)})
    288
    """
    n_titles, n_asks = len(LOAD_TITLES), len(LOAD_ASKS)
    if not 0 <= k < n_titles * n_asks:
        raise ValueError(f"there are {n_titles * n_asks} load dialogues, not {k + 1}")
    opener = f"I loved {LOAD_TITLES[k % n_titles]}, {LOAD_ASKS[k // n_titles]}"
    return (opener, *LOAD_FOLLOW_UPS[k % len(LOAD_FOLLOW_UPS)])


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
