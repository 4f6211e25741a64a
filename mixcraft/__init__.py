"""mixcraft: long-context training mixtures into MosaicML MDS shards, plus a minimal trainer."""

__version__ = "0.1.0"
