"""Attribution for a whole dataset, resumable: ``pathattr.run(...)`` and ``summarize(...)``.

Modules: ``workers`` (what computes a batch, locally or on Ray), ``driver`` (``run``),
``summary`` (``summarize``), ``evaluate`` (``evaluate_results``).

The driver lists the items, skips those the store already holds, cuts the rest into batches,
and hands each batch to an engine: ``local`` (one ``Worker`` in this process) or ``ray`` (one
``Worker`` actor per Ray worker, each loading the model once). Either way the driver alone
writes the store (``pathattr.store``), one transaction per batch, so Ray workers need no shared
file system and a kill at any moment is safe.

Batches are fixed slices of the dataset's key order, so an interrupted run recomputes a pending
batch with exactly the items it had, and results do not depend on where the run was stopped.
"""

from .driver import MAX_AUTO_BATCH, MIN_COMMITS, RunResult, auto_batch_size, run
from .evaluate import evaluate_results
from .summary import Summary, class_names, summarize
from .workers import LAYER_METHOD, Settings, Worker

__all__ = ["LAYER_METHOD", "MAX_AUTO_BATCH", "MIN_COMMITS", "RunResult", "Settings", "Summary",
           "Worker", "auto_batch_size", "class_names", "evaluate_results", "run", "summarize"]
