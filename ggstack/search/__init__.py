"""Vector-store search beyond one query: the start-up warm-up of the stores' indexes (`warmup`)."""
