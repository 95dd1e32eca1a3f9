"""Figures: everything drawn or reported from result files, and nothing else.

This subpackage owns the HDF5 readers (:mod:`.readers`: every read of a result file and every derived
quantity, such as :func:`gain_vs_final_cnn`, defined once, those of ``runners.interpolate`` and ``runners.sharpness``
in :mod:`.landscape_readers`; :mod:`.seed_readers`: runs grouped by their
``protocol_run`` and ``seed`` attributes, every plotted point a mean with its 95% CI from ``results.summarize``;
:mod:`.bands`: how such a point is drawn, band or error bars, seeds as dots), the paper's Figs. 1-5 and poster panels
(:mod:`.paper`), the landscape figures (:mod:`.landscape`: Fig. 6, sharpness, gain against λ₁ at t_w, basin width, and
``runners.interpolate --plot``), ``runners.sharpness --plot`` (:mod:`.sharpness_plot`), the ExpandNets
figures (:mod:`.expandnets`), the reproduction's ``report.md`` (:mod:`.report`) and its claims table (:mod:`.claims`, verdicts by
the rule of :mod:`.verdicts`), the alignment table of ``runners.interpolate --align`` (:mod:`.alignment`), the catalogue of
figures by file name (:mod:`.catalog`) and the one theme and save-figure helper (:mod:`.style`). It
reads HDF5 only: it never loads a checkpoint and never trains. CLIs import what is re-exported here.
"""

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, in CI and in tests; before any pyplot import

from runners._figures.alignment import aligned_paths, write_alignment_markdown  # noqa: E402
from runners._figures.catalog import FIGURES, make_figures  # noqa: E402
from runners._figures.claims import CLAIMS, check_claims, claims_markdown, claims_origin  # noqa: E402
from runners._figures.landscape import plot_paths  # noqa: E402
from runners._figures.readers import (  # noqa: E402
    DamagedFile,
    MissingData,
    RelaxGains,
    cnn_accuracy_at,
    epochs_seen,
    final_cnn_acc,
    gain_vs_final_cnn,
    gain_vs_matched_cnn,
    relax_gain,
    relax_gains,
    open_results,
)
from runners._figures.report import write_report  # noqa: E402
from runners._figures.sharpness_plot import plot_sharpness  # noqa: E402
from runners._figures.style import save_figure, set_style  # noqa: E402

__all__ = [
    # drawing every figure of a results file
    "FIGURES", "make_figures", "MissingData",
    # the one guarded way to open a results file: damaged or crafted files are one DamagedFile line
    "open_results", "DamagedFile",
    # the CLIs' --plot figures and the reproduction's report
    "plot_paths", "plot_sharpness", "write_report",
    # every claim of the paper, supplementary and poster with its verdict (the report opens with it)
    "CLAIMS", "check_claims", "claims_markdown", "claims_origin",
    # linear barriers before and after permutation alignment (runners.interpolate --align)
    "aligned_paths", "write_alignment_markdown",
    # derived quantities shared by several figures
    "gain_vs_final_cnn", "gain_vs_matched_cnn", "cnn_accuracy_at", "final_cnn_acc", "epochs_seen",
    "relax_gain", "relax_gains", "RelaxGains",
    # look and output of every figure
    "save_figure", "set_style",
]
