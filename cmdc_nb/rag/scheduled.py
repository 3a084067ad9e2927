"""The scheduler's `reindex` job: each occurrence brings an index up to date with its source.

```python
scheduling.create_scheduled_job(user, job_type="reindex", interval_seconds=3600,
                                job_config={"index_id": str(idx.id)})
```

Ingestion is incremental: unchanged documents are neither re-chunked nor re-embedded, changed ones are
replaced, and documents gone from the source are deleted. The job run's output is the ingest's counts
(`IngestReport.as_dict()`); the index's own record (`last_indexed_at`, counts, status) moves as after
any `ingest`. Importing this module registers the handler; the scheduler imports it the first time a
`reindex` job runs.
"""

from __future__ import annotations

from typing import Any

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.ingest import ingest
from cmdc_nb.services.scheduling import JobContext, register_job_handler

__all__ = ["reindex"]


def reindex(ctx: JobContext) -> dict[str, Any]:
    """Re-ingest `job_config["index_id"]` from the source its `source_config` names (a folder).

    Runs in the scheduler's worker thread. Documents that fail to read are counted in the output's
    `failed` (the rest are indexed); an index fed by `texts=` or `frame=` has no source to re-read and
    fails the attempt with the reason."""
    index = ctx.config.get("index_id")
    if not index:
        raise InvalidInputError('a reindex job needs job_config={"index_id": …}', field="job_config")
    report = ingest(str(index), progress=False, ws=ctx.ws)
    return report.as_dict()


register_job_handler("reindex", reindex)
