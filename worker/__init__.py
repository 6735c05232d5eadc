"""Card lookup worker: Kafka requests in, merged CareCloud lookups, one reply per request out."""

__version__ = "0.1.0"
