"""The first step of a turn: what the user asked. Titles and people named in free text,
the message parsed into state (rules by default, an LLM form on request), the dialogue
state carried across turns, and the one rule an item must meet (``rule``)."""
