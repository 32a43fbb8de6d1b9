"""Parquet lake (layout, writer, reader, compaction, inventory) and run history."""
