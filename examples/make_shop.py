"""A small, deterministic clothes shop: products, customers and purchases, as CSV.

The second domain of the tests and of the README's "your own catalog" walk-through:
products have a category, brand, colour, material and price; purchases follow a
popularity skew (a few products sell most) and a co-purchase structure (trainers, then
socks; a jumper, then a scarf). Generated on demand, never committed as data:

    python examples/make_shop.py /tmp/shop      # items.csv, interactions.csv, users.csv
"""

from __future__ import annotations

import csv
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

CATEGORIES = {  # category: (materials, lowest price, highest price)
    "jumper": (("wool", "cotton", "cashmere"), 35, 140),
    "t-shirt": (("cotton", "linen", "polyester"), 12, 45),
    "jacket": (("leather", "polyester", "down", "wool"), 70, 320),
    "trainers": (("leather", "canvas", "mesh"), 45, 180),
    "socks": (("cotton", "wool"), 5, 22),
    "jeans": (("denim",), 45, 130),
    "backpack": (("nylon", "canvas", "leather"), 30, 160),
    "scarf": (("wool", "cashmere", "silk"), 18, 90),
}
NEXT = {"trainers": "socks", "jumper": "scarf", "jeans": "t-shirt", "jacket": "backpack",
        "socks": "trainers", "scarf": "jumper", "t-shirt": "jeans", "backpack": "jacket"}
BRANDS = ("Nike", "Adidas", "Patagonia", "Uniqlo", "Levi's", "Fjällräven", "Barbour", "Vans",
          "Muji", "The North Face")
COLOURS = ("black", "white", "navy", "blue", "grey", "red", "green", "beige")
STYLES = ("Classic", "Alpine", "Urban", "Trail", "Heritage", "Essential", "Coastal", "Studio",
          "Nordic", "Everyday", "Summit", "Harbour")


def products(rng: random.Random, n: int) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        category = rng.choice(list(CATEGORIES))
        materials, lo, hi = CATEGORIES[category]
        brand, colour, material = rng.choice(BRANDS), rng.choice(COLOURS), rng.choice(materials)
        name = f"{brand} {rng.choice(STYLES)} {colour} {material} {category}"
        if name in seen:
            continue
        seen.add(name)
        out.append({"sku": f"SKU-{len(out) + 1:05d}", "name": name, "category": category,
                    "brand": brand, "colour": colour, "material": material,
                    "price": f"{rng.uniform(lo, hi):.2f}",
                    "description": f"{colour.capitalize()} {category} in {material} by {brand}, "
                                   f"from the {name.split()[len(brand.split())]} line."})
    return out


def purchases(rng: random.Random, items: list[dict], users: int, total: int) -> list[dict]:
    by_category: dict[str, list[dict]] = {}
    for it in items:
        by_category.setdefault(it["category"], []).append(it)
    # Zipf-like weights within each category: the first products listed sell most
    weights = {c: [1.0 / (k + 1) ** 1.1 for k in range(len(v))] for c, v in by_category.items()}
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = []
    for u in range(1, users + 1):
        brand = rng.choice(BRANDS)  # each customer leans to one brand
        category = rng.choice(list(CATEGORIES))
        when = start + timedelta(days=rng.randrange(300))
        for _ in range(max(2, int(rng.expovariate(users / total)))):
            pool = by_category[category]
            own = [it for it in pool if it["brand"] == brand]
            it = rng.choice(own) if own and rng.random() < 0.4 else \
                rng.choices(pool, weights[category])[0]
            rows.append({"user_id": f"c{u:04d}", "sku": it["sku"],
                         "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S")})
            when += timedelta(hours=rng.randrange(2, 24 * 20))
            category = NEXT[category] if rng.random() < 0.6 else rng.choice(list(CATEGORIES))
    return rows


def make_shop(folder: Path, seed: int = 0, n_products: int = 300, users: int = 400,
              interactions: int = 4000) -> dict[str, Path]:
    """Write ``items.csv``, ``interactions.csv`` and ``users.csv`` into ``folder``."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = products(rng, n_products)
    rows = purchases(rng, items, users, interactions)
    customers = [{"user_id": f"c{u:04d}", "country": rng.choice(("UK", "FR", "DE", "SE"))}
                 for u in range(1, users + 1)]
    paths = {}
    for name, table in (("items", items), ("interactions", rows), ("users", customers)):
        paths[name] = folder / f"{name}.csv"
        with open(paths[name], "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/make_shop.py OUTPUT_FOLDER")
    for kind, path in make_shop(Path(sys.argv[1])).items():
        print(f"{kind}: {path}")
