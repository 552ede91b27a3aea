"""``nsprim cost [--quick|--full] [--json] [--plot DIR]``: how lightweight a container is, here."""

from __future__ import annotations

import argparse

__all__ = ["configure_cost", "cmd_cost"]


def configure_cost(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repeats and sizes (a few seconds)")
    size.add_argument("--full", action="store_true", help="more repeats and sizes (longer, steadier)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (needs the nsprim[plot] extra)")
    p.add_argument("--cgroup-parent", metavar="PATH", help="create the run's cgroups under PATH (default: the roots)")


def cmd_cost(args: argparse.Namespace) -> int:
    from ..costs import cost

    plot_dir = None
    if args.plot is not None:
        from ..costs.plot import check_plotting

        check_plotting()  # before the measurement, not after it
        plot_dir = args.plot
    report = cost(quick=args.quick, full=args.full, cgroup_parent=args.cgroup_parent)
    if args.json:
        import json

        from ..costs.report import json_document

        print(json.dumps(json_document(report), indent=2))
    else:
        from ..costs.report import no_verdict_reason, table, verdict

        print(table(report))
        print()
        said = verdict(report)
        print(said if said is not None else f"No verdict: {no_verdict_reason(report)}.")
    if plot_dir is not None:
        from ..costs.plot import write_plots

        for path in write_plots(report, plot_dir):
            if not args.json:
                print(f"wrote {path}")
    return 0
