"""Explanations grounded in catalog facts, checked before they are shown.

Facts connect a recommended item to what this user said: for films, genres shared
with liked items, the liked title it resembles most, a director or cast member in
common, co-watching, the constraints it meets and what sets it apart; for an imported
catalog, its fact facets, the values and bounds asked for, and co-choice. The LLM
may phrase them; every title, person, year and genre its text names is checked
against the catalog, and any text that fails is replaced by sentences built from
the facts directly (``explain_picks``: one reason per pick, no two picks of a
reply in the same sentence frame).
"""
