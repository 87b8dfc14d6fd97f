"""The first step of a turn: what the user asked. Titles and people named in free text,
the message parsed into state (rules by default, an LLM form on request), and the
dialogue state carried across turns."""
