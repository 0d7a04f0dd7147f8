"""The dump pipeline: the pg_dump runner (``runner.PgDumper``, the ``Dumper`` port), the stream rewriter,
the profiles (what a backup holds), gzip out (``stream``) and in (``gunzip``)."""
