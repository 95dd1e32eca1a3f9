"""Benchmarks for ``python -m runners.bench``: side-by-side performance ratios, and the only timing code.

Each benchmark is one module exposing ``add_arguments(parser)`` and ``run(args) -> dict`` of rows:
embedding cost and eLCN / eFCN forward time (:mod:`.embedding`), Hessian probes against PyHessian
(:mod:`.hessian`), the elastic string's vmap and loop batchings (:mod:`.string_batching`), a linear
path against its bare forward passes (:mod:`.interpolation`), pairwise gradient cosines
(:mod:`.gradient_cosines`), one process against several gloo ranks (:mod:`.distributed`) and an
eLCN training step against its CNN's (:mod:`.elcn`); :mod:`.suite` assembles issue 15's performance
table from them (``bench all``) and renders it into the README.
Wall-clock timing (:func:`best_time`) lives here and nowhere else: library code never decides by
the clock, and tests never assert a timing. :data:`BENCHMARKS` maps each subcommand to its module;
the CLI imports what this ``__init__`` re-exports, never its modules.
"""

from runners._bench import distributed, elcn, embedding, gradient_cosines, hessian, interpolation, string_batching, suite
from runners._bench.distributed import PROBES
from runners._bench.suite import render_markdown, rewrite_readme
from runners._bench.timing import best_time, interleaved_best, load_average

# Subcommand of ``python -m runners.bench`` -> module with ``add_arguments`` and ``run``.
BENCHMARKS = {
    "embed": embedding,
    "hessian": hessian,
    "string": string_batching,
    "interp": interpolation,
    "gradcos": gradient_cosines,
    "distributed": distributed,
    "elcn": elcn,
}

__all__ = ["BENCHMARKS", "PROBES", "best_time", "interleaved_best", "load_average", "render_markdown", "rewrite_readme", "suite"]
