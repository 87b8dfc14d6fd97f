"""MovieLens: its loaders (RecBole wheels or the GroupLens zips), the film facts joined from
the CC0 film table, the reference table of films outside the catalog, and the request
vocabulary (moods, concepts) in ``vocabulary.json``."""
