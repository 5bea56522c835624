"""Fill the items table with realistic rows, fast: `python -m app.seed --rows 100000`.

Rows travel with PostgreSQL's COPY protocol (one stream, no statement per row), which loads
100,000 rows in about a second where one INSERT per row takes a minute. ANALYZE afterwards
gives the planner fresh statistics, so EXPLAIN shows the plans a real table would get.
"""

import argparse
import random
import sys
import time
from collections.abc import Iterator

import psycopg

from app.config import get_settings
from shared.settings import plain_postgres_url

# Categories with weights: a few big ones and a long tail, as in a real shop.
CATEGORIES = {
    "books": 18, "kitchen": 14, "toys": 12, "garden": 10, "electronics": 9, "clothing": 8,
    "sports": 7, "beauty": 6, "office": 5, "pets": 4, "music": 3, "tools": 2, "travel": 2,
}  # fmt: skip
ADJECTIVES = [
    "Blue", "Red", "Green", "Black", "White", "Small", "Large", "Classic", "Modern", "Compact",
    "Wooden", "Steel", "Ceramic", "Cotton", "Leather", "Eco", "Deluxe", "Travel", "Vintage",
]  # fmt: skip
NOUNS = {
    "books": ["novel", "cookbook", "atlas", "notebook", "comic", "dictionary"],
    "kitchen": ["mug", "kettle", "pan", "knife", "teapot", "cutting board"],
    "toys": ["puzzle", "robot", "teddy bear", "kite", "yo-yo", "train set"],
    "garden": ["hose", "shovel", "planter", "rake", "watering can", "seed kit"],
    "electronics": ["headphones", "charger", "speaker", "mouse", "keyboard", "webcam"],
    "clothing": ["t-shirt", "scarf", "jacket", "hat", "socks", "sweater"],
    "sports": ["ball", "yoga mat", "racket", "bottle", "dumbbell", "helmet"],
    "beauty": ["soap", "brush", "mirror", "comb", "lotion", "towel"],
    "office": ["pen", "stapler", "folder", "lamp", "desk organizer", "calendar"],
    "pets": ["leash", "bowl", "bed", "collar", "toy mouse", "brush"],
    "music": ["guitar strings", "ukulele", "metronome", "harmonica", "drumsticks", "capo"],
    "tools": ["hammer", "screwdriver", "wrench", "tape measure", "drill bit set", "level"],
    "travel": ["backpack", "suitcase", "pillow", "adapter", "passport cover", "bag tag"],
}  # fmt: skip

Row = tuple[str, float, str | None, str | None]


def generate_rows(count: int, *, first_number: int = 1, seed: int | None = None) -> Iterator[Row]:
    """Yield `count` rows (name, price, description, category) with unique names."""
    rng = random.Random(seed)
    categories, weights = list(CATEGORIES), list(CATEGORIES.values())
    for number in range(first_number, first_number + count):
        category = rng.choices(categories, weights)[0]
        noun = rng.choice(NOUNS[category])
        name = f"{rng.choice(ADJECTIVES)} {noun} #{number}"  # the number keeps names unique
        # Log-normal prices: many cheap items, a few expensive ones (median about 30).
        price = round(min(max(rng.lognormvariate(3.4, 1.0), 0.5), 5000.0), 2)
        description = f"{noun.capitalize()}, {category}" if rng.random() < 0.7 else None
        yield name, price, description, category if rng.random() < 0.95 else None


def seed(database_url: str, rows: int, *, truncate: bool = False) -> float:
    """Load `rows` new items with COPY, then ANALYZE; return the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(plain_postgres_url(database_url)) as conn:
        if truncate:
            conn.execute("TRUNCATE items RESTART IDENTITY")
        # Continue the numbering after the rows already there, so names stay unique.
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()
        with (
            conn.cursor() as cur,
            cur.copy("COPY items (name, price, description, category) FROM STDIN") as copy,
        ):
            for row in generate_rows(rows, first_number=int(first[0]) if first else 1):
                copy.write_row(row)
        conn.commit()
        conn.execute("ANALYZE items")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fill the items table with realistic rows.")
    parser.add_argument("--rows", type=int, default=100_000, help="how many rows to add")
    parser.add_argument("--truncate", action="store_true", help="empty the table first")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    seconds = seed(get_settings().database_url, args.rows, truncate=args.truncate)
    print(f"seeded {args.rows} rows in {seconds:.2f} s ({args.rows / seconds:,.0f} rows/s)")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
