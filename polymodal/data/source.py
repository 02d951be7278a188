"""A table on disk read in record batches, never whole: one Parquet / CSV / JSON Lines file, a
folder of them, or a glob (``data/part-*.parquet``), through pyarrow.

The table is cut into *blocks*, the units a stream shuffles and shards: Parquet row groups
(random access), or runs of ``block_rows`` rows of a CSV / JSONL file (read by scanning the file
once). Every file must have the same columns (types may widen, e.g. int64 -> double); a
shard that differs, a corrupt row group or a cell that does not parse gives a
:class:`~polymodal.data.base.DataError` naming the file and what was expected.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from polymodal.data.base import DataError
from polymodal.data.io import check_header

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json"}
READ_ERRORS = (pa.ArrowException, OSError, ValueError)


@dataclass(frozen=True)
class Block:
    file: int  # index into TableSource.files
    start: int  # first row, counted in the file
    stop: int  # one past the last row
    offset: int  # row number of ``start`` in the whole table (all files in order)
    row_group: int | None = None  # Parquet: the row group holding these rows

    @property
    def rows(self) -> int:
        return self.stop - self.start


def table_files(path: str | Path) -> list[Path]:
    """The files of a table: the file itself, a folder's table files, or a glob's matches."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text))
    elif Path(text).is_dir():
        files = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in FORMATS)
    else:
        files = [Path(text)] if Path(text).exists() else []
    if not files:
        raise DataError(
            f"{text}: no table found (expected a file, folder or glob of {', '.join(FORMATS)})"
        )
    kinds = {p.suffix.lower() for p in files}
    if not kinds <= set(FORMATS) or len({FORMATS[k] for k in kinds}) != 1:
        raise DataError(
            f"{text}: a streamed table is Parquet, CSV or JSON Lines, one format for every file; "
            f"found suffixes {sorted(kinds)}"
        )
    return files


class TableSource:
    """Files, unified schema and blocks of one table; reads blocks as record batches."""

    def __init__(self, path: str | Path, block_rows: int = 65536) -> None:
        self.path = str(path)
        self.files = table_files(path)
        self.format = FORMATS[self.files[0].suffix.lower()]
        self.block_rows = block_rows
        self.schema = self._unified_schema()
        self.blocks = self._blocks()
        self.rows = sum(b.rows for b in self.blocks)

    @property
    def base_dir(self) -> Path:
        """Relative image/audio paths are resolved against the table's folder."""
        folder = Path(self.path)
        return folder.resolve() if folder.is_dir() else self.files[0].resolve().parent

    def label(self, block: Block) -> str:
        """How errors name the rows of ``block``: the file (and row group)."""
        where = str(self.files[block.file])
        return where + (f", row group {block.row_group}" if block.row_group is not None else "")

    def row_labels(self, rows: np.ndarray) -> Any:
        """Index labels for table row numbers: the row in the file, prefixed with the file's name
        when the table has several files (``part-3.parquet:17``)."""
        if len(self.files) == 1:
            return rows
        starts = np.asarray(self.file_starts)
        which = np.searchsorted(starts, rows, side="right") - 1
        return [f"{self.files[f].name}:{r - starts[f]}" for f, r in zip(which, rows, strict=True)]

    # -- schema ------------------------------------------------------------------------------
    def _file_schema(self, file: Path) -> pa.Schema:
        try:
            if self.format == "parquet":
                schema = pq.read_schema(file)
            else:  # pyarrow itself refuses a CSV header / JSON record naming a column twice
                schema = ds.dataset(file, format=self.format).schema
        except READ_ERRORS as err:
            text = " ".join(str(err).split())
            raise DataError(f"{file}: cannot be read as {self.format} ({text})") from err
        check_header(file, schema.names)
        return schema

    def _unified_schema(self) -> pa.Schema:
        first = self._file_schema(self.files[0])
        schemas = [first]
        for file in self.files[1:]:
            schema = self._file_schema(file)
            missing = [n for n in first.names if n not in schema.names]
            extra = [n for n in schema.names if n not in first.names]
            if missing or extra:
                raise DataError(
                    f"{file}: its columns differ from {self.files[0]}: missing {missing}, "
                    f"unexpected {extra}; every file of a table must have the same columns"
                )
            for field in schema:
                want = first.field(field.name).type
                try:
                    pa.unify_schemas(
                        [pa.schema([first.field(field.name)]), pa.schema([field])],
                        promote_options="permissive",
                    )
                except (pa.ArrowTypeError, pa.ArrowInvalid) as err:
                    raise DataError(
                        f"{file}, column {field.name!r}: type {field.type}, expected {want} as "
                        f"in {self.files[0]}"
                    ) from err
            schemas.append(schema)
        return pa.unify_schemas(schemas, promote_options="permissive")

    def check_columns(self, columns: list[str]) -> None:
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise DataError(
                f"{self.path}: missing column(s) {missing}; the table has {self.schema.names}"
            )

    # -- blocks ------------------------------------------------------------------------------
    def _blocks(self) -> list[Block]:
        blocks: list[Block] = []
        offset = 0
        self.file_starts: list[int] = []  # row number of each file's first row in the table
        for i, file in enumerate(self.files):
            self.file_starts.append(offset)
            sizes: list[tuple[int | None, int]]
            if self.format == "parquet":
                meta = self._parquet(file).metadata
                sizes = [(g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
            else:
                n = self._count(file)
                sizes = [(None, min(self.block_rows, n - s)) for s in range(0, n, self.block_rows)]
            start = 0
            for group, n in sizes:
                if n:
                    blocks.append(Block(i, start, start + n, offset + start, group))
                start += n
            offset += start
        return blocks

    def _parquet(self, file: Path) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(file)
        except READ_ERRORS as err:
            raise DataError(f"{file}: not a readable Parquet file ({err})") from err

    def _count(self, file: Path) -> int:
        """Rows of a CSV / JSONL file: one scan (they have no row index)."""
        return sum(b.num_rows for b in self._scan(file, [self.schema.names[0]]))

    def _scan(self, file: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
        dataset = ds.dataset(file, format=self.format, schema=self.schema)
        try:
            yield from dataset.to_batches(columns=columns)
        except READ_ERRORS as err:
            raise DataError(
                f"{file}: cannot be read as {self.format} ({err}); expected the column types "
                f"of the table's first rows: {_types(self.schema, columns)}"
            ) from err

    # -- reading -----------------------------------------------------------------------------
    def read(
        self, blocks: list[Block], columns: list[str], batch_rows: int = 4096
    ) -> Iterator[tuple[Block, int, pa.RecordBatch]]:
        """``(block, first row within the block, batch)`` for every row of ``blocks``: Parquet
        blocks in the order given, CSV / JSONL blocks in file order (one scan per file)."""
        if self.format == "parquet":
            for block in blocks:
                yield from self._read_group(block, columns, batch_rows)
            return
        by_file: dict[int, list[Block]] = {}
        for block in blocks:
            by_file.setdefault(block.file, []).append(block)
        for file, mine in sorted(by_file.items()):
            yield from self._read_scan(file, sorted(mine, key=lambda b: b.start), columns)

    def _read_group(
        self, block: Block, columns: list[str], batch_rows: int
    ) -> Iterator[tuple[Block, int, pa.RecordBatch]]:
        file = self.files[block.file]
        pos = 0
        try:
            batches = self._parquet(file).iter_batches(
                batch_size=batch_rows, row_groups=[block.row_group], columns=columns
            )
            for batch in batches:
                yield block, pos, self._cast(batch, columns)
                pos += batch.num_rows
        except READ_ERRORS as err:
            raise DataError(
                f"{self.label(block)} (rows {block.start}-{block.stop - 1}): cannot be read "
                f"({type(err).__name__}: {err}); expected a valid Parquet row group with "
                f"columns {_types(self.schema, columns)}"
            ) from err
        if pos != block.rows:
            raise DataError(
                f"{self.label(block)}: read {pos} rows, expected {block.rows}; the file changed"
            )

    def _read_scan(
        self, file: int, blocks: list[Block], columns: list[str]
    ) -> Iterator[tuple[Block, int, pa.RecordBatch]]:
        pos, i = 0, 0
        for batch in self._scan(self.files[file], columns):
            end = pos + batch.num_rows
            while i < len(blocks) and blocks[i].start < end:
                block = blocks[i]
                lo, hi = max(block.start, pos), min(block.stop, end)
                if lo < hi:
                    yield block, lo - block.start, batch.slice(lo - pos, hi - lo)
                if block.stop > end:
                    break
                i += 1
            pos = end
            if i >= len(blocks):
                return

    def _cast(self, batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
        want = pa.schema([self.schema.field(c) for c in columns])
        return batch if batch.schema.equals(want) else batch.cast(want)


def _types(schema: pa.Schema, columns: list[str]) -> str:
    return ", ".join(f"{c}: {schema.field(c).type}" for c in columns if c in schema.names)


__all__ = ["Block", "TableSource", "table_files"]
