"""MovieLens: its loaders (RecBole wheels or the GroupLens zips), the film facts joined from
the CC0 film table, the reference table of films outside the catalog, the request
vocabulary (moods, concepts) in ``vocabulary.json`` and the catalog schema in
``schema.yaml``."""

from pathlib import Path

SCHEMA = Path(__file__).with_name("schema.yaml")
