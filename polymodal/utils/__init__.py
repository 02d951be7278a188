"""Small helpers with no polymodal dependencies: seeding, atomic IO, logging."""

from polymodal.utils.io import atomic_write_text, read_json, write_json
from polymodal.utils.seed import seed_everything

__all__ = ["atomic_write_text", "read_json", "seed_everything", "write_json"]
